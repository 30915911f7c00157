"""Expire abandoned resumable uploads now, as the hourly Celery beat task does."""

from django.conf import settings
from django.core.management.base import BaseCommand

from portal.submissions.resumable import expire_sessions


class Command(BaseCommand):
    help = "Expire open uploads that received no bytes for BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS and delete their partial files."

    def handle(self, *args, **options):
        count = expire_sessions()
        hours = settings.BUNDLE_UPLOAD_SESSION_LIFETIME_HOURS
        self.stdout.write(f"expired {count} open uploads idle for more than {hours} hours")
