"""The pipeline on the production components: PostgreSQL and a real Celery worker on Redis or RabbitMQ.

Runs in the PostgreSQL part of scripts/test.sh (DATABASE_URL set to
PostgreSQL, CELERY_BROKER_URL to Redis); skipped on the embedded SQLite
default. Faults tested here: a database connection killed by the server,
and a worker killed with SIGKILL in the middle of a validation.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings
from django.db import connection, transaction

from portal.audit.models import AuditEntry
from portal.celery import app as celery_app
from portal.submissions.models import Submission, ValidationReport
from portal.submissions.services import add_reference
from portal.submissions.tasks import validate_submission

from .conftest import build_bundle

ROOT = Path(__file__).resolve().parents[2]
FINISHED = {"judged", "rejected"}
BROKERS = {
    "redis": os.environ.get("CELERY_BROKER_URL", "") if os.environ.get("CELERY_BROKER_URL", "").startswith("redis") else "redis://127.0.0.1:6379/0",
    "rabbitmq": os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="needs DATABASE_URL of the PostgreSQL server"),
]


@pytest.fixture(autouse=True)
def real_queue(eager_celery):
    """Send tasks to the broker; the suite's default runs them in-process."""
    celery_app.conf.task_always_eager = False


def reachable(url: str) -> bool:
    address = urlparse(url)
    try:
        socket.create_connection((address.hostname, address.port or 6379), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def stored(tmp_path, vendor, card, vendor_key, rule_pack, lab_key):
    """A received submission with a reference for its rule pack, committed for other processes to see."""
    reference = build_bundle(tmp_path, lab_key, name="reference.tar", vendor="reference-lab", model="CPU", serial="ref-0")
    add_reference(reference, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})
    data = build_bundle(tmp_path, vendor_key).read_bytes()
    import hashlib

    from django.core.files.base import ContentFile

    with transaction.atomic():
        submission = Submission(vendor=vendor, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        submission.bundle.save("upload.tar", ContentFile(data), save=False)
        submission.save()
    return submission


def finish_entries(submission) -> list[str]:
    entries = AuditEntry.objects.filter(object_type="submissions.submission", object_id=str(submission.pk))
    return sorted(entries.exclude(action="submission.received").values_list("action", flat=True))


def assert_judged_once(submission) -> None:
    submission.refresh_from_db()
    assert submission.state in FINISHED
    assert ValidationReport.objects.filter(submission=submission).count() == 1
    assert finish_entries(submission) in (["submission.judged", "submission.validating"], ["submission.rejected", "submission.validating"])


# A database connection the server drops --------------------------------------

@pytest.mark.django_db(transaction=True)
def test_dropped_database_connection_is_retried(stored, caplog):
    import psycopg

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    database = settings.DATABASES["default"]
    with psycopg.connect(host=database["HOST"], port=database["PORT"] or 5432, user=database["USER"], dbname="postgres", autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])

    result = validate_submission.apply(args=[stored.pk])

    assert result.get() in FINISHED
    assert "transient database error, retry 1 of 3" in caplog.text
    assert_judged_once(stored)


# A real worker ------------------------------------------------------------------

class Worker:
    """`celery -A tests.portal.worker_app worker` in its own process group, on one queue."""

    def __init__(self, broker: str, queue: str, marker: Path, log: Path, overrides: dict | None = None, pool: tuple[str, ...] = ("-P", "solo")):
        database = settings.DATABASES["default"]
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}/{database['NAME']}",
            "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "DJANGO_SECRET_KEY": "worker-test-" + uuid.uuid4().hex,
            "CELERY_BROKER_URL": broker, "CELERY_TASK_ALWAYS_EAGER": "false",
            # Redis hands an unacknowledged task to another worker after this long.
            "CELERY_BROKER_VISIBILITY_TIMEOUT": "20", "CELERY_TASK_TIME_LIMIT": "15", "CELERY_TASK_SOFT_TIME_LIMIT": "12",
            "PORTAL_TEST_PAUSE_MARKER": str(marker),
            **(overrides or {}),
        }
        command = [sys.executable, "-m", "celery", "-A", "tests.portal.worker_app", "worker", "-Q", queue, *pool,
                   "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info", "-n", f"{uuid.uuid4().hex}@test"]
        self.log = open(log, "ab")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.log.close()


def wait_for(condition, seconds: float, what: str, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} within {seconds:.0f} s; worker log:\n{log.read_text(errors='replace')[-3000:]}")


def state_of(submission) -> str:
    return Submission.objects.values_list("state", flat=True).get(pk=submission.pk)


def enqueue(broker: str, queue: str, submission_id: int) -> None:
    with celery_app.connection_for_write(broker) as broker_connection:
        validate_submission.apply_async(args=[submission_id], connection=broker_connection, queue=queue)


@pytest.fixture
def worker_run(tmp_path):
    workers = []

    def start(broker: str, queue: str, **options) -> Worker:
        """Start a worker and wait until it consumes: Redis drops messages sent to a queue nobody declared yet."""
        log = tmp_path / "worker.log"
        ready = log.read_bytes().count(b" ready.") if log.exists() else 0
        workers.append(Worker(broker, queue, tmp_path / "paused", log, **options))
        wait_for(lambda: log.read_bytes().count(b" ready.") > ready, 60, "the worker did not start", log)
        return workers[-1]

    yield start
    for worker in workers:
        worker.kill()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker_name", ["redis", "rabbitmq"])
def test_worker_killed_mid_validation_is_redelivered(stored, worker_run, tmp_path, broker_name):
    broker = BROKERS[broker_name]
    if not reachable(broker):
        pytest.skip(f"no {broker_name} broker at {broker}")
    queue = f"test-{uuid.uuid4().hex}"
    log = tmp_path / "worker.log"

    first = worker_run(broker, queue)
    enqueue(broker, queue, stored.pk)
    wait_for(lambda: (tmp_path / "paused").exists(), 60, "the first worker did not start validating", log)
    assert state_of(stored) == "validating"
    first.kill()

    worker_run(broker, queue)
    wait_for(lambda: state_of(stored) in FINISHED, 90, "the task was not delivered again", log)
    assert_judged_once(stored)


@pytest.mark.django_db(transaction=True)
def test_upload_is_validated_by_a_worker_after_commit(stored, worker_run, tmp_path):
    """The default broker of the settings (Redis in scripts/test.sh): a second delivery of the same id changes nothing."""
    broker = settings.CELERY_BROKER_URL
    if not broker or not reachable(broker):
        pytest.skip("CELERY_BROKER_URL is not set to a reachable broker")
    (tmp_path / "paused").write_text("no pause")
    queue = f"test-{uuid.uuid4().hex}"
    worker_run(broker, queue)
    enqueue(broker, queue, stored.pk)
    enqueue(broker, queue, stored.pk)
    wait_for(lambda: state_of(stored) in FINISHED, 60, "the worker did not validate the submission", tmp_path / "worker.log")
    time.sleep(1)
    assert_judged_once(stored)


@pytest.mark.django_db(transaction=True)
def test_soft_time_limit_of_a_worker_rejects_once(stored, worker_run, tmp_path):
    """The worker's timer fires the soft limit during the paused verdict; the submission ends rejected with one report.

    Celery enforces time limits in the prefork pool only, so this worker runs one prefork child.
    """
    broker = settings.CELERY_BROKER_URL
    if not broker or not reachable(broker):
        pytest.skip("CELERY_BROKER_URL is not set to a reachable broker")
    queue = f"test-{uuid.uuid4().hex}"
    limits = {"CELERY_TASK_SOFT_TIME_LIMIT": "3", "CELERY_TASK_TIME_LIMIT": "10"}
    worker_run(broker, queue, overrides=limits, pool=("-P", "prefork", "-c", "1"))
    # The sender's time limits travel in the task message and win over the worker's, so send the same ones,
    # as a portal process configured like its workers does.
    with celery_app.connection_for_write(broker) as broker_connection:
        validate_submission.apply_async(args=[stored.pk], connection=broker_connection, queue=queue, soft_time_limit=3, time_limit=10)

    wait_for(lambda: state_of(stored) in FINISHED, 60, "the soft time limit did not end the validation", tmp_path / "worker.log")
    time.sleep(1)
    assert_judged_once(stored)
    report = ValidationReport.objects.get(submission=stored)
    assert report.error_code == "validation_timed_out"
    assert report.error_params == {"value": 3}
    assert (tmp_path / "paused").exists()  # the verdict was reached and paused, so the limit fired inside it
