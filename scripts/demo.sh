#!/usr/bin/env bash
# Install everything, then run the main job end to end on the embedded
# default: portal on SQLite with Celery run eagerly, the CPU demo workloads,
# a signed bundle, upload, verdict and certificate. See scripts/demo.py.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
