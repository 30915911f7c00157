"""The certification portal: a Django project with one app per concern."""

from portal.celery import app as celery_app

__all__ = ["celery_app"]
