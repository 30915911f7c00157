"""Celery tasks of human evaluation: thin wrappers that take ids."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError, close_old_connections, transaction

from portal.evaluation import services

logger = logging.getLogger(__name__)

# Database connection failures pass; anything else is a bug and must not be retried.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)
MAX_RETRIES = 3


@shared_task(bind=True, max_retries=MAX_RETRIES, acks_late=True)
def build_pairs_after_verdict(self, submission_id: int) -> int:
    """Build the missing blind pairs of a judged submission and return how many sets were built."""
    try:
        return len(services.build_sets_after_verdict(submission_id))
    except TRANSIENT_ERRORS as error:
        close_old_connections()
        logger.warning("submission %s: transient database error while building pairs, retry %s of %s: %s",
                       submission_id, self.request.retries + 1, MAX_RETRIES, error)
        return self.retry(exc=error, countdown=5 * 2**self.request.retries, throw=not self.request.is_eager)


def enqueue_pairs_after_verdict(submission_id: int) -> None:
    """Queue the pair building of a submission once the transaction that judged it commits."""
    transaction.on_commit(lambda: build_pairs_after_verdict.delay(submission_id))
