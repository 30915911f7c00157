"""Typed readers for settings that come from environment variables.

Each reader raises ImproperlyConfigured naming the variable and its value,
so a typo in a deployment stops the process at start-up with a clear reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def read_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def read_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in TRUE_WORDS:
        return True
    if value.lower() in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a boolean; set it to one of {sorted(TRUE_WORDS | FALSE_WORDS)}"
    )


def read_int(name: str, default: int, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer; set it to a whole number") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} is below the minimum {minimum}; set it to {minimum} or more")
    return number


def read_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list; empty items are dropped."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def read_path(name: str, default: Path) -> Path:
    value = _raw(name)
    path = default if value is None else Path(value)
    if not path.is_absolute():
        raise ImproperlyConfigured(f"{name}={str(path)!r} is not an absolute path; give the full path")
    return path


def read_base_url(name: str) -> str:
    """Read an http(s) address with no path, query or fragment; "" when unset. The trailing slash is dropped."""
    value = _raw(name)
    return "" if value is None else parse_base_url(name, value)


def parse_base_url(name: str, value: str) -> str:
    """Check that `value` is an http(s) scheme and host only; ImproperlyConfigured names `name` otherwise."""
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path.strip("/") or parsed.query or parsed.fragment:
        raise ImproperlyConfigured(f"{name}={value!r} is not a base URL; set it to the scheme and host only, such as https://cert.example.org")
    return value.rstrip("/")


def read_database_url(name: str, default: str) -> dict:
    """Parse a database URL with dj-database-url; only PostgreSQL and SQLite are accepted."""
    import dj_database_url

    value = _raw(name) or default
    try:
        config = dj_database_url.parse(value, conn_max_age=60)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}={value!r} is not a database URL: {error}") from None
    engine = config.get("ENGINE", "")
    if not engine.endswith(("postgresql", "sqlite3")):
        raise ImproperlyConfigured(
            f"{name}={value!r} names the engine {engine!r}; use a postgres:// or sqlite:/// URL"
        )
    return config
