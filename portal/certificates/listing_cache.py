"""Cached rendering of the public listing and feeds, keyed by a token that changes with the data they show.

Every save or delete of a certificate, card, vendor or rule pack replaces the
token of the single ListingVersion row in the same transaction. Readers see
the new token exactly when they see the new data, so a revocation shows on
the next request after its commit, on every worker sharing the database.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache
from django.utils.safestring import SafeString, mark_safe

from portal.certificates.models import ListingVersion

T = TypeVar("T")

# Entries are unreachable once the token changes; the timeout only bounds how long they occupy the cache.
LISTING_CACHE_SECONDS = 3600


def listing_token() -> str:
    """Return the current token, creating the row with a random token in a fresh database."""
    token = ListingVersion.objects.filter(pk=1).values_list("token", flat=True).first()
    if token is None:
        token = ListingVersion.objects.get_or_create(pk=1, defaults={"token": secrets.token_hex(16)})[0].token
    return token


def bump_listing_version(**_signal_arguments) -> None:
    """Give the listing a new token; a signal receiver, so it runs inside the transaction of the change."""
    ListingVersion.objects.update_or_create(pk=1, defaults={"token": secrets.token_hex(16)})


def listing_cache_key(*parts: object) -> str:
    digest = hashlib.sha256(repr((listing_token(), *parts)).encode("utf-8")).hexdigest()
    return f"listing:{digest}"


def cached(key: str, compute: Callable[[], T]) -> T:
    """Return the value cached under `key`, computing and storing it on a miss."""
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, LISTING_CACHE_SECONDS)
    return value


def cached_listing(key: str, render: Callable[[], str]) -> SafeString:
    """Return the cached HTML under `key`, rendering and storing it on a miss."""
    html = cached(key, lambda: str(render()))
    return mark_safe(html)  # rendered by our own template, with every value escaped there
