#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis servers the production-profile tests use
# are up on 127.0.0.1. Machines of this project's kind start both before a
# session; this starts them again if they stopped.
set -euo pipefail

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    echo "services: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
