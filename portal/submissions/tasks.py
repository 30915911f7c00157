"""Celery tasks of the submission pipeline: thin wrappers that take ids."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from portal.submissions import pipeline

# Database connection failures pass; anything else is a bug or a bad bundle and must not be retried.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(autoretry_for=TRANSIENT_ERRORS, max_retries=3, retry_backoff=True, acks_late=True)
def validate_submission(submission_id: int) -> str:
    return pipeline.validate_submission(submission_id).state
