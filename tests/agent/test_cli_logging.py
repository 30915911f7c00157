"""The agent's log lines carry ISO 8601 times with their UTC offset."""

import logging
import os
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent.cli import LocalTimeFormatter
from agent.errors import EXIT_REMOTE

REPOSITORY = Path(__file__).resolve().parents[2]
SHANGHAI = timezone(timedelta(hours=8))


def test_formatter_time_in_shanghai():
    # The formatter reads the process's time zone, so this runs in a process started with TZ set.
    code = (
        "import logging\n"
        "from agent.cli import LocalTimeFormatter\n"
        "record = logging.LogRecord('agent', logging.INFO, 'x.py', 1, 'hello', None, None)\n"
        "record.created = 1.5\n"
        "print(LocalTimeFormatter('%(asctime)s %(message)s').format(record))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, env={**os.environ, "TZ": "Asia/Shanghai"},
                            capture_output=True, text=True, timeout=60, check=True)

    assert result.stdout.strip() == "1970-01-01T08:00:01.500+08:00 hello"


def test_formatter_time_is_the_record_time():
    record = logging.LogRecord("agent", logging.INFO, "x.py", 1, "hello", None, None)

    stamp = LocalTimeFormatter("%(asctime)s").format(record)

    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() is not None
    assert abs(parsed.timestamp() - record.created) < 0.001


def test_command_log_line_has_offset(tmp_path):
    # A tar archive, because upload rejects any other file before it logs the request; it is sent only to a closed port.
    payload = tmp_path / "payload.txt"
    payload.write_text("not sent anywhere but a closed loopback port")
    bundle = tmp_path / "any.tar"
    with tarfile.open(bundle, "w") as archive:
        archive.add(payload, arcname="payload.txt")
    command = [sys.executable, "-m", "agent", "-v", "upload", str(bundle), "--portal", "http://127.0.0.1:9",
               "--token", "t", "--single-request"]

    result = subprocess.run(command, cwd=REPOSITORY, env={**os.environ, "TZ": "Asia/Shanghai"},
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == EXIT_REMOTE
    line = next(line for line in result.stderr.splitlines() if " DEBUG agent.commands.upload: uploading " in line)
    stamp = datetime.fromisoformat(line.split(" ", 1)[0])
    assert stamp.utcoffset() == timedelta(hours=8)
    assert abs(stamp - datetime.now(SHANGHAI)) < timedelta(minutes=2)
