"""Celery tasks of the submission pipeline: thin wrappers that take ids."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from portal.submissions import pipeline, resumable

logger = logging.getLogger(__name__)

# Database connection failures pass; anything else is a bug or a bad bundle and must not be retried.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
MAX_RETRIES = 3


def retry_delay(retries: int) -> int:
    """Seconds before the next attempt: 5, 10, 20."""
    return 5 * 2**retries


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def validate_submission(self, submission_id: int) -> str:
    try:
        return pipeline.validate_submission(submission_id).state
    except SoftTimeLimitExceeded:
        # Without this the submission would stay `validating` for ever once the hard limit kills the task.
        logger.error("submission %s: validation passed the soft time limit of %s s", submission_id, settings.CELERY_TASK_SOFT_TIME_LIMIT)
        return pipeline.reject_after_time_limit(submission_id, settings.CELERY_TASK_SOFT_TIME_LIMIT).state
    except TRANSIENT_ERRORS as error:
        # Drop the broken connection so the next attempt opens a new one.
        close_old_connections()
        logger.warning("submission %s: transient database error, retry %s of %s: %s", submission_id, self.request.retries + 1, MAX_RETRIES, error)
        # On a worker retry() raises Retry and the broker delivers the task again. Run eagerly (the
        # embedded setup) it must not raise: apply() then runs the returned retry in-process.
        return self.retry(exc=error, countdown=retry_delay(self.request.retries), throw=not self.request.is_eager)


@shared_task
def expire_upload_sessions() -> int:
    """Expire abandoned resumable uploads; run hourly by Celery beat (CELERY_BEAT_SCHEDULE)."""
    return resumable.expire_sessions()
