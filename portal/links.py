"""Absolute URLs for links that leave the portal: QR codes, feeds, credentials.

PORTAL_BASE_URL, when set, names the public address and wins. Without it a
link is built from the request, whose Host header Django checks against
ALLOWED_HOSTS before any view runs. The static export sets
`request.public_base_url` to its --base-url, which wins over both.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def public_base_url(request: HttpRequest | None = None) -> str:
    """Return the public address without a trailing slash, or "" when neither the setting nor a request gives one."""
    override = getattr(request, "public_base_url", "") if request is not None else ""
    if override:
        return override.rstrip("/")
    if settings.PORTAL_BASE_URL:
        return settings.PORTAL_BASE_URL
    if request is None:
        return ""
    return request.build_absolute_uri("/").rstrip("/")


def public_url(path: str, request: HttpRequest | None = None) -> str:
    """Return `path` (root-relative) under the public address; without one, `path` itself."""
    return public_base_url(request) + path
