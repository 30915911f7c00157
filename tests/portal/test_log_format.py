"""The portal's log lines carry ISO 8601 local time with its UTC offset, like the agent's."""

import logging
import logging.config
import re
from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.http import HttpResponseServerError
from django.test import RequestFactory
from django.urls import reverse
from django.utils.log import log_response

from portal.logs import ClientErrorOneLine

from .conftest import login


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


def _request_records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "django.request"]


def test_forbidden_page_logged_in_one_line(client, owner, caplog):
    login(client, owner)
    caplog.set_level(logging.WARNING, logger="django.request")
    assert client.get(reverse("staff-queue")).status_code == 403

    records = _request_records(caplog)
    assert len(records) == 1
    assert records[0].exc_info is None
    line = configured_formatter().format(records[0])
    assert "\n" not in line
    assert "Traceback" not in line
    assert "status 403, GET /staff/queue/, user owner" in line


def test_server_error_keeps_traceback(caplog):
    request = RequestFactory().get("/staff/queue/")
    caplog.set_level(logging.ERROR, logger="django.request")
    try:
        raise RuntimeError("database went away")
    except RuntimeError as error:
        log_response("Internal Server Error: %s", request.path, request=request, response=HttpResponseServerError(), exception=error)

    records = _request_records(caplog)
    assert len(records) == 1
    assert records[0].exc_info is not None
    line = configured_formatter().format(records[0])
    assert "Traceback" in line
    assert "RuntimeError: database went away" in line


def test_client_error_shortened_once_when_configured_twice(client, owner):
    """runserver applies LOGGING twice (django.setup, then get_wsgi_application), so django.request gets two filters."""
    logger = logging.getLogger("django.request")
    extra = ClientErrorOneLine()
    logger.addFilter(extra)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        login(client, owner)
        assert client.get(reverse("staff-queue")).status_code == 403
    finally:
        logger.removeFilter(extra)
        logger.removeHandler(handler)

    message = records[0].getMessage()
    assert message.count("(status 403, GET /staff/queue/, user owner)") == 1
