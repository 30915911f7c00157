"""The Celery app for worker tests: the real portal app, with a pause in the first validation.

`celery -A tests.portal.worker_app worker` runs the real pipeline. The first
task to reach the verdict writes the file named by PORTAL_TEST_PAUSE_MARKER
and sleeps, so the test can SIGKILL the worker in the middle of validation;
later runs (the redelivered task on a fresh worker) go straight through.
"""

import os
import time
from pathlib import Path

import django

from portal.celery import app

django.setup()

# Redis: look for unacknowledged tasks past the visibility timeout every 2 s instead of every 100 s or so.
app.conf.broker_transport_options = {**app.conf.broker_transport_options, "unacked_restore_throttle": 1, "unacked_restore_interval": 2}

from portal.submissions import pipeline  # noqa: E402  (needs the app registry)

_judge = pipeline.judge_against_references


def _judge_after_pause(*args, **kwargs):
    marker = Path(os.environ["PORTAL_TEST_PAUSE_MARKER"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(600)
    return _judge(*args, **kwargs)


pipeline.judge_against_references = _judge_after_pause
