"""A failed workload: one line in the run's language on the terminal, the traceback in RUN/agent.log."""

import io
import logging

import pytest

from agent.i18n import set_language
from agent.runner.execute import run_one
from agent.runner.folder import RunFolder
from agent.runner.run_log import LOG_NAME, run_log
from agent.workloads.common import WorkloadContext
from certification.bundle import list_run_files
from certification.records import read_json, read_jsonl
from tests.certification.runfolder import build_run

WORKLOAD = "pretrain-llama"


def failing_runner(context):
    raise ValueError("shapes [2, 3] and [4] do not match")


def context(tmp_path) -> WorkloadContext:
    return WorkloadContext(workload_id=WORKLOAD, spec={"kind": "pretrain"}, pack=None, data_root=tmp_path,
                           run_dir=tmp_path, device="cpu")


@pytest.fixture
def chinese():
    set_language("zh")
    yield
    set_language(None)


@pytest.fixture
def english():
    set_language("en")
    yield
    set_language(None)


@pytest.fixture
def terminal(caplog):
    """Return the text that a handler of the root logger writes, as the command line's terminal handler does.

    pytest's own capture also receives the records of loggers that do not propagate to the root, so the test reads this handler.
    """
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)


def run_failing(folder: RunFolder, tmp_path) -> bool:
    with run_log(folder):
        return run_one(folder, context(tmp_path), failing_runner)


def test_failure_one_line_in_chinese(tmp_path, caplog, terminal, chinese):
    caplog.set_level(logging.INFO)

    assert not run_failing(RunFolder(tmp_path), tmp_path)

    lines = terminal.getvalue().splitlines()
    assert lines == [f"INFO {WORKLOAD}：开始 pretrain 工作负载",
                     f"ERROR {WORKLOAD}：工作负载失败：ValueError: shapes [2, 3] and [4] do not match；请在 {tmp_path / LOG_NAME} 中查看回溯信息"]


def test_failure_traceback_in_run_log(tmp_path, caplog, english):
    caplog.set_level(logging.INFO)

    run_failing(RunFolder(tmp_path), tmp_path)

    log = (tmp_path / LOG_NAME).read_text(encoding="utf-8")
    assert f"{WORKLOAD}: starting the pretrain workload" in log
    assert f"{WORKLOAD}: the workload failed: ValueError: shapes [2, 3] and [4] do not match; read its traceback in {tmp_path / LOG_NAME}" in log
    assert "Traceback (most recent call last):" in log
    assert "ValueError: shapes [2, 3] and [4] do not match" in log


def test_failure_records_unchanged(tmp_path):
    run_failing(RunFolder(tmp_path), tmp_path)

    events = read_jsonl(tmp_path / "events.jsonl")
    result = read_json(tmp_path / "workloads" / WORKLOAD / "result.json")
    assert [event["event"] for event in events] == ["workload_start", "crash"]
    assert events[1]["workload"] == WORKLOAD
    assert events[1]["error"] == "ValueError: shapes [2, 3] and [4] do not match"
    assert result["status"] == "failed"
    assert result["summary"] == {"error": "ValueError: shapes [2, 3] and [4] do not match"}


def test_verbose_shows_traceback(tmp_path, caplog, terminal, english):
    caplog.set_level(logging.DEBUG)

    run_failing(RunFolder(tmp_path), tmp_path)

    text = terminal.getvalue()
    assert f"DEBUG {WORKLOAD}: traceback of the failure\nTraceback (most recent call last):" in text
    assert "ValueError: shapes [2, 3] and [4] do not match" in text


def test_follower_rank_logs_traceback(tmp_path, caplog, terminal, english):
    # A rank that writes no run folder has no run log, so its own log (workerlog.N) keeps the traceback.
    caplog.set_level(logging.INFO)

    run_failing(RunFolder(tmp_path, writer=False), tmp_path)

    text = terminal.getvalue()
    assert f"ERROR {WORKLOAD}: the workload failed: ValueError: shapes [2, 3] and [4] do not match; its traceback follows\nTraceback (most recent call last):" in text
    assert not (tmp_path / LOG_NAME).exists()


def test_run_log_detached_after_run(tmp_path):
    run_failing(RunFolder(tmp_path), tmp_path)
    size = (tmp_path / LOG_NAME).stat().st_size

    logging.getLogger("agent.runner.execute").warning("a line after the run")

    assert (tmp_path / LOG_NAME).stat().st_size == size


def test_run_log_not_bundled(tmp_path):
    run_dir = build_run(tmp_path / "run", workloads=())
    (run_dir / LOG_NAME).write_text("a log line\n", encoding="utf-8")

    assert LOG_NAME not in list_run_files(run_dir)
