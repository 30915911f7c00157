"""An upload handler that streams files to disk, hashes them and stops at a size limit."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.files.uploadhandler import SkipFile, TemporaryFileUploadHandler

TOO_LARGE_FLAG = "bundle_upload_too_large"

logger = logging.getLogger(__name__)


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Write every uploaded file to a temporary file and record its sha256 as `file.sha256`.

    When a file passes BUNDLE_UPLOAD_MAX_BYTES the handler drops it and sets
    the request attribute `bundle_upload_too_large`, so the view can answer
    with the `bundle_too_large` error instead of a missing file.
    """

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0
        self.digest = hashlib.sha256()

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > settings.BUNDLE_UPLOAD_MAX_BYTES:
            setattr(self.request, TOO_LARGE_FLAG, True)
            self.file.close()
            raise SkipFile()
        self.digest.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        uploaded = super().file_complete(file_size)
        uploaded.sha256 = self.digest.hexdigest()
        return uploaded


# Room for the multipart boundaries and the small form fields around the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def declared_length(request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def request_limit() -> int:
    return settings.BUNDLE_UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD_BYTES


class UploadSizeLimitMiddleware:
    """Refuse a request whose Content-Length passes the upload limit before any byte of its body is read.

    It sits before the CSRF middleware, which would otherwise parse (and
    stream to disk) the whole multipart body to find the CSRF token.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = declared_length(request)
        if length is not None and length > request_limit():
            return self.refuse(request, length)
        return self.get_response(request)

    def refuse(self, request, length: int):
        from django.http import JsonResponse
        from django.shortcuts import render

        from portal.submissions.errors import SubmissionError

        error = SubmissionError("bundle_too_large", limit=settings.BUNDLE_UPLOAD_MAX_BYTES)
        logger.info("request of %s bytes to %s refused before reading: %s", length, request.path, error.code)
        if request.path.startswith("/api/"):
            return JsonResponse({"code": error.code, "detail": error.detail}, status=error.status)
        return render(request, "submissions/too_large.html", {"error": error}, status=error.status)
