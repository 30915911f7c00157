"""The portal's log lines carry ISO 8601 local time with its UTC offset, like the agent's."""

import logging
import logging.config
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings


def configured_formatter() -> logging.Formatter:
    """Build the console formatter exactly as settings.LOGGING declares it."""
    configurator = logging.config.DictConfigurator(settings.LOGGING)
    return configurator.configure_formatter(dict(settings.LOGGING["formatters"]["plain"]))


def test_log_time_has_utc_offset():
    record = logging.LogRecord("portal.test", logging.INFO, __file__, 1, "stored %s", ("bundle",), None)
    record.created = datetime(2026, 12, 5, 3, 13, 54, 250000, tzinfo=ZoneInfo("UTC")).timestamp()
    line = configured_formatter().format(record)
    assert line == "2026-12-05T11:13:54.250+08:00 INFO portal.test: stored bundle"


def test_log_time_parses_as_iso_8601():
    record = logging.LogRecord("portal.test", logging.WARNING, __file__, 1, "x", (), None)
    stamp = configured_formatter().format(record).split(" ", 1)[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp)
    assert abs(datetime.fromisoformat(stamp).timestamp() - record.created) < 0.001
