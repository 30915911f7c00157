"""System checks for the deployment: `manage.py check` reports these with ids and hints."""

from django.conf import settings
from django.core.checks import Error, register


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
