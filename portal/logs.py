"""Log formatting of the portal's processes (manage.py, gunicorn, Celery workers)."""

import logging
from datetime import datetime, timezone


class IsoTimeFormatter(logging.Formatter):
    """Log formatter whose time is ISO 8601 local time with its UTC offset, such as 2026-12-05T11:13:54.123+08:00.

    Django sets the process's local time zone to TIME_ZONE (Asia/Shanghai), so
    the times match the pages, and the offset matches the agent's log lines.
    """

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, timezone.utc).astimezone().isoformat(timespec="milliseconds")
