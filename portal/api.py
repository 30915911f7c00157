"""The API's error format: every 4xx answer is {"code": ..., "detail": ...}."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from portal.errors import PortalError


def exception_handler(exc, context):
    if isinstance(exc, PortalError):
        return Response({"code": exc.code, "detail": exc.detail}, status=exc.status)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", None)
    code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
    response.data = {"code": code, "detail": str(detail) if detail is not None else str(exc)}
    return response
