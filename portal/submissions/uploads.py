"""An upload handler that streams files to disk, hashes them and stops at a size limit."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadhandler import SkipFile, TemporaryFileUploadHandler

TOO_LARGE_FLAG = "bundle_upload_too_large"


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
