"""Inference parallel degrees: the agent's own server runs in one process, so a degree above 1 needs an external server."""

import json
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import EXIT_USAGE, AgentError
from agent.runner import RunRequest, start_run
from agent.runner.overrides import check_inference_degrees
from certification.rulepack import load_rule_pack

REPO = Path(__file__).resolve().parents[2]
ENDPOINT = "http://127.0.0.1:8188/v1/completions"


@pytest.fixture(scope="module")
def standard():
    return load_rule_pack("standard-2024.1")


def test_pack_degree_rejected_without_endpoint(standard):
    with pytest.raises(AgentError) as error:
        check_inference_degrees(standard, ["infer-llama1-13b-bf16", "infer-llama3-70b-bf16"], {}, None)

    assert error.value.code == "inference_parallel_unsupported"
    assert "infer-llama3-70b-bf16" in error.value.message
    assert "tensor_parallel_degree 8" in error.value.message
    assert "AGENT_INFERENCE_ENDPOINT" in error.value.hint
    assert "--set tensor_parallel_degree=1" in error.value.hint


def test_set_degree_rejected_without_endpoint(standard):
    with pytest.raises(AgentError) as error:
        check_inference_degrees(standard, ["infer-llama1-13b-bf16"], {"tensor_parallel_degree": 2}, None)

    assert error.value.code == "inference_parallel_unsupported"
    assert "tensor_parallel_degree 2" in error.value.message


@pytest.mark.parametrize(("workloads", "overrides", "endpoint"), [
    (["infer-llama1-13b-bf16"], {}, None),  # the pack's degree 1
    (["infer-llama3-70b-bf16"], {"tensor_parallel_degree": 1}, None),
    (["infer-llama3-70b-bf16"], {}, ENDPOINT),
    (["infer-llama1-13b-bf16"], {"tensor_parallel_degree": 4}, ENDPOINT),
    (["pretrain-llama1-13b"], {}, None),  # tensor_parallel_degree 2, trained by PaddleNLP's Trainer
])
def test_degrees_accepted(standard, workloads, overrides, endpoint):
    check_inference_degrees(standard, workloads, overrides, endpoint)


def test_run_rejects_before_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AGENT_INFERENCE_ENDPOINT", raising=False)
    out = tmp_path / "run"

    code = main(["run", "--profile", "standard-level3", "--device", "cpu", "--workloads", "infer-llama3-70b-bf16",
                 "--out", str(out)])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[inference_parallel_unsupported]" in error
    assert "tensor_parallel_degree 8" in error
    assert not out.exists()


def test_rejection_in_chinese(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AGENT_INFERENCE_ENDPOINT", raising=False)

    code = main(["--lang", "zh", "run", "--profile", "standard-level3", "--device", "cpu",
                 "--workloads", "infer-llama3-70b-bf16", "--out", str(tmp_path / "run")])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[inference_parallel_unsupported]" in error
    assert "自带的推理服务" in error
    assert "cannot run" not in error


def test_run_with_endpoint_passes_check(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_INFERENCE_ENDPOINT", ENDPOINT)
    request = RunRequest(profile="standard-level3", out=tmp_path / "run", resume=False, data_root=tmp_path,
                         device="cpu", workloads=["infer-llama3-70b-bf16"])

    with pytest.raises(AgentError) as error:
        start_run(request)
    # The run goes on to the next check: the standard pack's data are not under this data root.
    assert error.value.code == "data_missing"


def test_resume_uses_recorded_degree(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENT_INFERENCE_ENDPOINT", raising=False)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"overrides": {"tensor_parallel_degree": 1}}), encoding="utf-8")
    request = RunRequest(profile="standard-level3", out=out, resume=True, data_root=tmp_path, device="cpu",
                         workloads=["infer-llama3-70b-bf16"])

    with pytest.raises(AgentError) as error:
        start_run(request)
    assert error.value.code == "data_missing"


def tensor_parallel_context(tmp_path, degree: int):
    """The smoke pack's infer-llama with tensor_parallel_degree as a free key, set to `degree`."""
    from tests.agent.test_inference_checkpoint import infer_context, smoke_pack

    hyperparameters = load_rule_pack("smoke-2026.1").workload("infer-llama")["hyperparameters"]
    free = {**hyperparameters["free"], "tensor_parallel_degree": 1}
    pack = smoke_pack(None, hyperparameters={"fixed": dict(hyperparameters["fixed"]), "free": free})
    return infer_context(pack, tmp_path / "run", tensor_parallel_degree=degree)


def test_workload_rejects_degree_without_endpoint(tmp_path, monkeypatch):
    pytest.importorskip("paddle")
    from agent.workloads import inference

    monkeypatch.delenv("AGENT_INFERENCE_ENDPOINT", raising=False)
    context = tensor_parallel_context(tmp_path, 2)

    with pytest.raises(ValueError, match="tensor_parallel_degree 2 cannot run"):
        inference.run(context)
    assert not (context.out_dir / "config.json").exists()


@pytest.mark.slow
def test_external_server_records_declared_degree(tmp_path, monkeypatch):
    pytest.importorskip("paddle")
    from agent.inference.server import BatchingEngine, CompletionsServer
    from agent.workloads import inference

    context = tensor_parallel_context(tmp_path, 2)
    # The agent's own server, started here on a port of its own, plays the external server.
    model = inference.model_loader(context)("float32")
    model.eval()
    engine = BatchingEngine(model, context.load_tokenizer(), "external-llama")
    with CompletionsServer(engine) as external:
        monkeypatch.setenv("AGENT_INFERENCE_ENDPOINT", external.url)
        monkeypatch.setenv("AGENT_INFERENCE_MODEL", "external-llama")
        summary = inference.run(context)

    server = json.loads((context.out_dir / "config.json").read_text(encoding="utf-8"))["server"]
    assert server["kind"] == "external"
    assert server["endpoint"] == external.url
    assert server["tensor_parallel_degree"] is None  # not observed by the agent
    assert server["declared_tensor_parallel_degree"] == 2
    assert summary["trials"] >= 1
