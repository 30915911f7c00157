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


class ClientErrorOneLine(logging.Filter):
    """Shorten django.request records of 4xx responses to one line with the status, method, path and user.

    Django logs a PermissionDenied or other client error with the traceback of
    the exception that produced it. A vendor opening a staff page is ordinary,
    so the traceback only hides the real errors. Records of 5xx responses keep
    their traceback.

    A record is shortened once even when the filter sits on the logger twice,
    which happens when LOGGING is applied twice in one process: `runserver`
    calls django.setup() and then loads the WSGI application, which calls it again.
    """

    SHORTENED = "client_error_one_line"

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is None or status >= 500 or getattr(record, self.SHORTENED, False):
            return True
        setattr(record, self.SHORTENED, True)
        request = getattr(record, "request", None)
        message = record.getMessage()
        record.msg = "%s (status %s, %s %s, user %s)"
        record.args = (message, status, getattr(request, "method", "-"), getattr(request, "path", "-"), _username(request))
        record.exc_info = None
        record.exc_text = None
        return True


def _username(request) -> str:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return "anonymous"
    return user.get_username()
