"""System checks for the deployment: `manage.py check` reports these with ids and hints."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_celery_broker(app_configs, **kwargs):
    if settings.CELERY_TASK_ALWAYS_EAGER or settings.CELERY_BROKER_URL:
        return []
    return [
        Error(
            "Celery tasks are not run eagerly (CELERY_TASK_ALWAYS_EAGER is off) but CELERY_BROKER_URL is not set.",
            hint="Set CELERY_BROKER_URL to a Redis or RabbitMQ URL, or set CELERY_TASK_ALWAYS_EAGER=true.",
            id="portal.E001",
        )
    ]


@register()
def check_certificate_font(app_configs, **kwargs):
    font = settings.CERTIFICATE_FONT_PATH
    if font.is_file():
        return []
    return [
        Error(
            f"The CJK font for certificate PDFs is missing: {font}.",
            hint="Restore static/fonts/wqy-microhei.ttf from the repository; without it Chinese text in PDFs does not render.",
            id="portal.E002",
        )
    ]


DEVELOPMENT_KEY_PREFIX = "insecure-development-key"


def embedded_setup() -> bool:
    """True for the fresh-checkout setup: SQLite and tasks run in-process."""
    engine = settings.DATABASES["default"]["ENGINE"]
    return engine.endswith("sqlite3") and settings.CELERY_TASK_ALWAYS_EAGER and not settings.CELERY_BROKER_URL


@register()
def check_secret_key(app_configs, **kwargs):
    """The development key is fine on the embedded setup only; with PostgreSQL or a broker it is an error."""
    if not settings.SECRET_KEY.startswith(DEVELOPMENT_KEY_PREFIX) or embedded_setup():
        return []
    return [
        Error(
            "DJANGO_SECRET_KEY is not set, so the portal signs sessions with a key published in its source.",
            hint="Set DJANGO_SECRET_KEY to a long random value, for example from: python -c 'import secrets; print(secrets.token_urlsafe(50))'.",
            id="portal.E003",
        )
    ]


@register()
def check_task_time_limits(app_configs, **kwargs):
    """A task must end before the broker hands its unacknowledged message to another worker."""
    hard, soft = settings.CELERY_TASK_TIME_LIMIT, settings.CELERY_TASK_SOFT_TIME_LIMIT
    visibility = settings.PORTAL_BROKER_VISIBILITY_TIMEOUT
    if soft < hard < visibility:
        return []
    return [
        Error(
            f"Task time limits (soft {soft} s, hard {hard} s) are not below the broker's visibility timeout ({visibility} s) in that order.",
            hint="Keep CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT < CELERY_BROKER_VISIBILITY_TIMEOUT, or a slow validation runs twice.",
            id="portal.E004",
        )
    ]


@register()
def check_public_base_url(app_configs, **kwargs):
    """Outside the embedded setup, a missing PORTAL_BASE_URL leaves credentials with a verification link that has no host."""
    if settings.PORTAL_BASE_URL or embedded_setup():
        return []
    return [
        Warning(
            "PORTAL_BASE_URL is not set, so signed credentials record a verification path without a host and export_site needs --base-url.",
            hint="Set PORTAL_BASE_URL to the portal's public address, such as https://cert.example.com.",
            id="portal.W001",
        )
    ]
