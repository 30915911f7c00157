#!/usr/bin/env bash
# Install everything, then run the test suite twice: on the embedded default
# (SQLite, Celery run eagerly) and on the production components (PostgreSQL,
# Redis as the Celery broker). Extra arguments go to both pytest runs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
. .venv/bin/activate

# Two pytest-xdist workers (TEST_WORKERS sets the count), each given whole test
# modules (--dist loadfile), so a module's fixtures, such as a shared training
# run, are built once. Most tests keep at most one CPU core busy (one Paddle
# process, the portal, a browser), so two workers keep a two-core machine busy.
# Modules go out in collection order, where tests/conftest.py puts the slow ones
# first, rather than xdist's default order of most tests first.
echo "== tests on the embedded default: SQLite, eager Celery, ${TEST_WORKERS:-2} workers"
env -u DATABASE_URL -u CELERY_BROKER_URL \
    python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"

# tests/portal/test_worker.py runs here: real `celery worker` processes on Redis and
# RabbitMQ (skipped when RabbitMQ is not listening), one of them killed with SIGKILL.
echo "== portal tests on PostgreSQL and Redis, with real Celery workers"
scripts/services.sh
DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/accel_cert} \
CELERY_BROKER_URL=${TEST_CELERY_BROKER_URL:-redis://127.0.0.1:6379/0} \
    python -m pytest tests/portal -m "not slow" "$@"
