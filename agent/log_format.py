"""The format of the agent's log lines, on the terminal and in a run's log file."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LocalTimeFormatter(logging.Formatter):
    """Log formatter whose time is ISO 8601 local time with its UTC offset, such as 2026-12-05T10:13:23.123+08:00.

    The offset makes the time unambiguous next to the portal's Asia/Shanghai times and the records' UTC times.
    """

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, timezone.utc).astimezone().isoformat(timespec="milliseconds")
