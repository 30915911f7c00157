"""The load generator, the trial statistics and the QPS search against real local HTTP servers."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from agent.inference import loadgen
from agent.inference.loadgen import Endpoint, run_sync, EndpointError, RequestRecord, RequestSpec, TrialPlan, poisson_arrivals, run_trial, stream_completion
from agent.i18n import set_language
from agent.inference.search import SearchError, SearchSettings, _log_trial, run_search
from certification.latency import allowed_misses, nearest_rank, summarize_trial
from tests.agent.inference_servers import StreamingServer

SETTINGS = {
    "load_model": "open_loop_poisson", "time_to_first_token_percentile": 99, "time_to_first_token_max_seconds": 1.0,
    "min_duration_seconds": 0.3, "warmup_seconds": 0.1, "output_tokens": 3, "start_level": 20, "growth_factor": 2.0,
    "max_level": 40, "refine_steps": 0, "confirmations": 2, "request_timeout_seconds": 5, "peak_data_type": "fp32",
}


def one_request(url: str, timeout: float = 5.0) -> RequestRecord:
    record = RequestRecord(trial=0, index=0, scheduled=0.0, warmup=False)
    spec = RequestSpec("hello", 3, "tiny")
    run_sync(stream_completion(Endpoint.parse(url), spec, record, 0.0, timeout))
    return record


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_ttft_skips_chunks_without_text():
    with StreamingServer(delay=0.2) as server:
        record = one_request(server.url)
    assert record.status == "ok"
    assert record.ttft >= 0.2
    assert record.text_chunks == 3
    assert record.output_tokens == 3
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["max_tokens"] == 3


def frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


STREAM = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    + frame(b'data: {"choices": [{"index": 0, "text": ""}]}\n\n')
    + frame(b": keep-alive\n\n")
    + frame(b'data: {"choices": [{"index": 0, "text": " w0"}]}\n\n')
    + frame(b'data: {"choices": [{"index": 0, "text": " w1"}]}\n\n')
    + frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"
)


def test_reader_stamps_arrival_byte_by_byte(monkeypatch):
    """Fed one byte per read, the reader stamps the read that completes the first text event, not a later parse."""
    first_text_end = STREAM.index(b" w0") + len(b' w0"}]}\n\n')
    readings = iter(range(len(STREAM) * 2))
    monkeypatch.setattr(loadgen, "clock", lambda: float(next(readings)))
    record = RequestRecord(trial=0, index=0, scheduled=0.0, warmup=False)

    async def feed():
        reader = loadgen.ResponseReader(record, 0.0, asyncio.get_running_loop())
        for offset in range(len(STREAM)):
            reader.data_received(STREAM[offset:offset + 1])
        return reader.finished

    finished = run_sync(feed())
    assert finished.done()
    assert finished.exception() is None
    assert record.http_status == 200
    assert record.text_chunks == 2
    assert record.first_token == float(first_text_end - 1)


@pytest.mark.parametrize(
    ("cut", "status"), [(STREAM.index(b" w0"), "incomplete"), (STREAM.index(b"data: [DONE]"), "incomplete"), (20, "malformed")],
)
def test_reader_cut_stream_fails(cut, status):
    record = RequestRecord(trial=0, index=0, scheduled=0.0, warmup=False)

    async def feed():
        reader = loadgen.ResponseReader(record, 0.0, asyncio.get_running_loop())
        reader.data_received(STREAM[:cut])
        reader.connection_lost(None)
        return reader.finished

    failure = run_sync(feed()).exception()
    assert isinstance(failure, loadgen.StreamFailure)
    assert failure.status == status


def test_connection_opens_before_send():
    plan = TrialPlan(trial=0, load_model="poisson", level=20.0, warmup_seconds=0.0, duration_seconds=0.5, max_tokens=2,
                     ttft_limit=1.0, percentile=99.0, request_timeout=5.0, seed=2, connect_ahead_seconds=0.05)
    with StreamingServer(delay=0.01) as server:
        state = run_sync(run_trial(Endpoint.parse(server.url), ["p"], "tiny", plan))
    assert len(state.records) == 10
    for record in state.records:
        assert record.status == "ok"
        assert record.connect_start < record.connected <= record.sent < record.first_token
        assert record.scheduled - record.connect_start >= 0.025
        assert record.receive_stamp == "kernel"
        # Sent at the scheduled time: the connection was ready well before it.
        assert record.sent - record.scheduled < 0.03


def test_idle_connection_closed_by_server_reconnects():
    """A server that drops a connection before its request is written gets a new connection, and the request succeeds."""
    connections = []

    async def handle(reader, writer):
        connections.append(writer)
        if len(connections) == 1:
            writer.close()
            return
        await reader.readuntil(b"\r\n\r\n")
        writer.write(STREAM)
        await writer.drain()
        writer.close()

    async def exchange():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        record = RequestRecord(trial=0, index=0, scheduled=0.2, warmup=False)
        origin = loadgen.clock()
        async with server:
            await stream_completion(Endpoint.parse(f"http://127.0.0.1:{port}/v1/completions"), RequestSpec("hi", 2, "tiny"),
                                    record, origin, 5.0, send_at=origin + 0.2)
        return record

    record = run_sync(exchange())
    assert len(connections) == 2
    assert record.status == "ok"
    assert record.text_chunks == 2
    assert record.sent >= 0.2


@pytest.mark.parametrize(
    ("mode", "status"),
    [("http_error", "http_error"), ("malformed", "malformed"), ("error_event", "server_error"), ("no_done", "incomplete")],
)
def test_bad_stream_gets_status(mode, status):
    with StreamingServer(mode=mode, delay=0.0) as server:
        record = one_request(server.url)
    assert record.status == status
    assert record.error
    assert math.isinf(record.ttft)


def test_down_endpoint_is_connect_error():
    record = one_request(f"http://127.0.0.1:{free_port()}/v1/completions")
    assert record.status == "connect_error"
    assert "Refused" in record.error


def test_slow_server_times_out():
    with StreamingServer(delay=1.0) as server:
        record = one_request(server.url, timeout=0.3)
    assert record.status == "timeout"


def test_endpoint_rejects_other_schemes():
    with pytest.raises(EndpointError):
        Endpoint.parse("ftp://127.0.0.1/v1/completions")
    assert Endpoint.parse("http://localhost:8000").path == "/v1/completions"


def test_poisson_arrivals_fixed_count():
    arrivals = poisson_arrivals(50.0, 4.0, seed=3)
    assert len(arrivals) == 200
    assert arrivals == sorted(arrivals)
    assert arrivals[0] >= 0.0
    assert arrivals[-1] < 4.0
    assert poisson_arrivals(50.0, 4.0, seed=3) == arrivals


@pytest.mark.parametrize(("count", "percentile", "allowed"), [(100, 99, 1), (150, 99, 1), (99, 99, 0), (200, 99, 2), (10, 50, 5), (1, 99, 0)])
def test_allowed_misses_nearest_rank(count, percentile, allowed):
    assert allowed_misses(count, percentile) == allowed
    values = [0.0] * (count - allowed) + [2.0] * allowed
    assert nearest_rank(values, percentile) <= 1.0
    if allowed < count:
        assert nearest_rank([0.0] * (count - allowed - 1) + [2.0] * (allowed + 1), percentile) > 1.0


def request_row(index, ttft=0.1, status="ok", warmup=False):
    return {"trial": 0, "index": index, "warmup": warmup, "scheduled": index * 0.01, "sent": index * 0.01,
            "first_token": index * 0.01 + ttft if status == "ok" else None, "end": index * 0.01 + 0.5, "status": status}


def test_failed_requests_count_as_misses():
    rows = [request_row(index) for index in range(199)] + [request_row(199, status="timeout")]
    summary = summarize_trial(rows, 1.0, 99, failed_max=1)
    assert summary.requests == 200
    assert summary.misses == 1
    assert summary.passed
    assert not summarize_trial(rows, 1.0, 99, failed_max=0).passed


def test_warmup_excluded_from_statistics():
    rows = [request_row(0, ttft=5.0, warmup=True)] + [request_row(index) for index in range(1, 11)]
    summary = summarize_trial(rows, 1.0, 99)
    assert summary.requests == 10
    assert summary.passed


def test_trial_stops_early_when_overloaded():
    plan = TrialPlan(trial=0, load_model="poisson", level=30.0, warmup_seconds=0.0, duration_seconds=2.0, max_tokens=2,
                     ttft_limit=0.1, percentile=99.0, request_timeout=5.0, seed=1)
    with StreamingServer(delay=0.3) as server:
        state = run_sync(run_trial(Endpoint.parse(server.url), ["p"], "tiny", plan))
    assert state.stopped
    statuses = {record.status for record in state.records}
    assert "not_sent" in statuses
    assert len(state.records) == 60
    assert not summarize_trial([record.to_dict() for record in state.records], 0.1, 99).passed


def test_closed_loop_trial():
    plan = TrialPlan(trial=0, load_model="concurrency", level=3, warmup_seconds=0.1, duration_seconds=0.4, max_tokens=2,
                     ttft_limit=1.0, percentile=99.0, request_timeout=5.0, seed=1)
    with StreamingServer(delay=0.05) as server:
        state = run_sync(run_trial(Endpoint.parse(server.url), ["p"], "tiny", plan))
    assert all(record.status == "ok" for record in state.records)
    summary = summarize_trial([record.to_dict() for record in state.records], 1.0, 99)
    assert summary.passed
    assert 10 < summary.qps < 70


def test_search_confirms_level_twice(tmp_path):
    with StreamingServer(delay=0.01) as server:
        record = run_search(Endpoint.parse(server.url), "tiny", ["a", "b"], SearchSettings.from_pack(SETTINGS), tmp_path)
    roles = [(trial["level"], trial["role"]) for trial in record["trials"]]
    assert roles == [(20, "search"), (40.0, "search"), (40.0, "confirm"), (40.0, "confirm")]
    assert record["result"]["level"] == 40.0
    rows = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert {row["trial"] for row in rows} == {0, 1, 2, 3}
    assert json.loads((tmp_path / "search.json").read_text())["status"] == "completed"


def test_search_down_endpoint_records_failure(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1/completions"
    with pytest.raises(SearchError) as raised:
        run_search(Endpoint.parse(url), "tiny", ["a"], SearchSettings.from_pack(SETTINGS), tmp_path)
    assert raised.value.code == "endpoint_unreachable"
    record = json.loads((tmp_path / "search.json").read_text())
    assert record["status"] == "failed"
    assert record["error"]["code"] == "endpoint_unreachable"
    statuses = record["trials"][0]["summary"]["statuses"]
    assert statuses["connect_error"] >= 1
    assert set(statuses) <= {"connect_error", "not_sent"}


def test_search_malformed_stream_never_reports_qps(tmp_path):
    with StreamingServer(mode="malformed", delay=0.0) as server, pytest.raises(SearchError) as raised:
        run_search(Endpoint.parse(server.url), "tiny", ["a"], SearchSettings.from_pack(SETTINGS), tmp_path)
    assert raised.value.code == "endpoint_malformed"
    assert "result" not in json.loads((tmp_path / "search.json").read_text())


@pytest.mark.parametrize("change", [{"load_model": "bursty"}, {"surprise": 1}, {"growth_factor": 1.0}])
def test_settings_rejects_bad_values(change):
    with pytest.raises(ValueError):
        SearchSettings.from_pack({**SETTINGS, **change})


def test_loadgen_command_down_endpoint(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hello"}\n')
    url = f"http://127.0.0.1:{free_port()}/v1/completions"
    completed = subprocess.run(
        [sys.executable, "-m", "agent", "loadgen", "--endpoint", url, "--model", "tiny", "--prompts", str(prompts),
         "--settings", json.dumps(SETTINGS), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 5
    assert "error[endpoint_unreachable]" in completed.stderr
    assert (tmp_path / "out" / "search.json").is_file()


def test_loadgen_command_down_endpoint_in_chinese(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hello"}\n')
    url = f"http://127.0.0.1:{free_port()}/v1/completions"
    completed = subprocess.run(
        [sys.executable, "-m", "agent", "--lang", "zh", "loadgen", "--endpoint", url, "--model", "tiny", "--prompts", str(prompts),
         "--settings", json.dumps(SETTINGS), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60,
    )
    recorded = json.loads((tmp_path / "out" / "search.json").read_text())["error"]
    assert completed.returncode == 5
    assert f"error[endpoint_unreachable]: 无法连接到 {url}：" in completed.stderr
    assert "建议：请启动服务，或用 --endpoint 传入其 completions 端点的网址；已完成的试验记录在 " in completed.stderr
    assert recorded["message"].startswith(f"could not connect to {url}: ")
    assert recorded["hint"] == "start the server, or pass the URL of its completions endpoint with --endpoint"


def test_loadgen_child_logs_in_run_language(tmp_path, monkeypatch, caplog):
    from agent.workloads.common import WorkloadContext
    from agent.workloads.inference import _run_loadgen

    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    set_language("zh")
    context = WorkloadContext("infer-tiny", {}, SimpleNamespace(data={"settings": {"inference": SETTINGS}}), tmp_path, tmp_path / "run", "cpu")
    context.out_dir.mkdir(parents=True)

    with StreamingServer(delay=0.01) as server, caplog.at_level(logging.INFO, logger="agent"):
        search = _run_loadgen(context, server.url, "tiny", [{"prompt": "a"}])

    relayed = [record.getMessage() for record in caplog.records if record.getMessage().startswith("loadgen：")]
    assert search["status"] == "completed"
    assert [line for line in relayed if line.startswith("loadgen：第 0 次试验（搜索），负载 20 req/s：通过，p99 TTFT ")]
    assert not [line for line in relayed if "trial" in line or "requests" in line]


def test_early_stop_logged_in_chinese(caplog):
    plan = TrialPlan(trial=2, load_model="poisson", level=30.0, warmup_seconds=0.0, duration_seconds=2.0, max_tokens=2,
                     ttft_limit=0.1, percentile=99.0, request_timeout=5.0, seed=1, role="confirm")
    with StreamingServer(delay=0.3) as server:
        state = run_sync(run_trial(Endpoint.parse(server.url), ["p"], "tiny", plan))
    summary = summarize_trial([record.to_dict() for record in state.records], 0.1, 99)
    set_language("zh")

    with caplog.at_level(logging.INFO, logger="agent"):
        _log_trial(plan, summary, state)

    line = caplog.records[0].getMessage()
    assert line.startswith("第 2 次试验（确认），负载 30 req/s：未通过，p99 TTFT ")
    assert f"（提前停止：{state.stop_misses} 个计入测量的请求超出 TTFT 限值，多于允许的 {state.stop_allowed} 个）" in line
    assert state.stop_misses > state.stop_allowed
    failures = caplog.records[1].getMessage()
    assert failures.startswith("第 2 次试验：")
    assert "试验在此请求应发出之前已停止" in failures or "试验在此请求完成之前已停止" in failures


def test_kernel_stamp_ignores_busy_loop():
    """A chunk that arrives while the event loop is busy is stamped when the kernel received it, not when it was read."""
    sent_first_text = []

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        head_end = STREAM.index(b"\r\n\r\n") + 4
        writer.write(STREAM[:head_end])
        await writer.drain()
        await asyncio.sleep(0.05)
        sent_first_text.append(loadgen.clock())
        writer.write(STREAM[head_end:])
        await writer.drain()
        writer.close()

    def serve_in_thread(ready):
        async def main():
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            ready.append(server.sockets[0].getsockname()[1])
            async with server:
                await asyncio.sleep(3)
        asyncio.run(main())

    ready = []
    thread = threading.Thread(target=serve_in_thread, args=(ready,), daemon=True)
    thread.start()
    while not ready:
        time.sleep(0.01)

    async def exchange():
        record = RequestRecord(trial=0, index=0, scheduled=0.0, warmup=False)
        task = asyncio.create_task(stream_completion(Endpoint.parse(f"http://127.0.0.1:{ready[0]}/v1/completions"),
                                                     RequestSpec("hi", 2, "tiny"), record, 0.0, 5.0))
        await asyncio.sleep(0.02)
        time.sleep(0.3)  # The loop is blocked while the text chunks arrive.
        await task
        return record

    record = run_sync(exchange())
    assert record.status == "ok"
    assert record.receive_stamp == "kernel"
    assert record.first_token - sent_first_text[0] < 0.02
    assert record.end - record.first_token > 0.2
