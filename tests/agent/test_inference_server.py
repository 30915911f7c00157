"""The agent's Paddle completions server and the data type probes, on a tiny LLaMA built from its config."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

paddle = pytest.importorskip("paddle")

from agent.i18n import set_language  # noqa: E402
from agent.inference import datatypes  # noqa: E402
from agent.inference.loadgen import Endpoint, run_sync, RequestRecord, RequestSpec, stream_completion  # noqa: E402
from agent.inference.server import BatchingEngine, CompletionsServer  # noqa: E402
from agent.workloads.common import load_tokenizer  # noqa: E402
from certification.rulepack import load_rule_pack  # noqa: E402
from tests.agent.test_lambada_targets import REPO  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(REPO / "data" / "tokenizers" / "llama2_tokenizer.model")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from paddlenlp.transformers import LlamaConfig, LlamaForCausalLM

    paddle.seed(7)
    config = dict(load_rule_pack("smoke-2026.1").data["models"]["llama-tiny"]["config"], use_flash_attention=False)
    folder = tmp_path_factory.mktemp("model")
    LlamaForCausalLM(LlamaConfig(**config)).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def server(model_dir, tokenizer):
    model, _ = datatypes.load_model(datatypes.saved_model_loader(model_dir), "fp32", tokenizer)
    engine = BatchingEngine(model, tokenizer, "llama-tiny", max_batch_size=8, batch_wait_seconds=0.05)
    engine.warm_up()
    with CompletionsServer(engine) as running:
        yield running


def stream(url: str, count: int, max_tokens: int = 5) -> list[RequestRecord]:
    async def send_all():
        records = [RequestRecord(trial=0, index=index, scheduled=0.0, warmup=False) for index in range(count)]
        await asyncio.gather(*(stream_completion(Endpoint.parse(url), RequestSpec(f"你好 hello {index}", max_tokens, "llama-tiny"), record, 0.0, 60.0)
                               for index, record in enumerate(records)))
        return records

    return run_sync(send_all())


def test_server_streams_fixed_length(server):
    [record] = stream(server.url, 1, max_tokens=6)
    assert record.status == "ok", record.error
    assert record.output_tokens == 6
    assert record.prompt_tokens > 1
    assert record.sent < record.first_token <= record.end


def test_server_streams_concurrent_requests(server):
    records = stream(server.url, 6)
    assert [record.status for record in records] == ["ok"] * 6
    assert [record.output_tokens for record in records] == [5] * 6


def test_server_matches_greedy_generate(server, tokenizer):
    body = json.dumps({"prompt": "hello", "max_tokens": 4, "stream": False, "ignore_eos": True}).encode()
    request = urllib.request.Request(server.url, data=body, headers={"Content-Type": "application/json"})
    reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
    ids = [tokenizer.bos_token_id, *tokenizer.encode("hello")]
    with paddle.no_grad():
        generated, _ = server.engine.model.generate(input_ids=paddle.to_tensor([ids]), attention_mask=paddle.ones([1, len(ids)], dtype="int64"),
                                                    max_new_tokens=4, decode_strategy="greedy_search", eos_token_id=None, pad_token_id=0)
    assert reply["choices"][0]["text"] == tokenizer.decode(generated.numpy().tolist()[0], skip_special_tokens=True)
    assert reply["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize(("body", "code"), [
    ({"prompt": "x", "temperature": 0.7}, "unsupported_temperature"),
    ({"prompt": "x", "max_tokens": 0}, "invalid_max_tokens"),
    ({"max_tokens": 3}, "invalid_prompt"),
])
def test_server_rejects_bad_request(server, body, code):
    request = urllib.request.Request(server.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 400
    assert json.loads(raised.value.read())["error"]["code"] == code


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="checks the CPU build, which has no 16-bit or int8 GEMM kernels")
@pytest.mark.parametrize("data_type", ["fp16", "bf16", "int8_weight_only", "int4_weight_only", "a8w8"])
def test_cpu_data_types_not_supported(model_dir, tokenizer, data_type):
    with pytest.raises(datatypes.DataTypeNotSupported) as raised:
        datatypes.load_model(datatypes.saved_model_loader(model_dir), data_type, tokenizer, ["calibration text"])
    assert "not registered" in raised.value.reason or "neither runs here" in raised.value.reason


def test_unknown_data_type_rejected(model_dir, tokenizer):
    with pytest.raises(ValueError):
        datatypes.load_model(datatypes.saved_model_loader(model_dir), "fp8", tokenizer)


def run_unsupported_workload(workload_id: str, model_dir, tmp_path):
    """Run a smoke-pack inference workload that this CPU cannot run; return its context and the raised error."""
    from agent.errors import WorkloadNotSupported
    from agent.workloads import inference
    from agent.workloads.common import WorkloadContext

    pack = load_rule_pack("smoke-2026.1")
    context = WorkloadContext(workload_id=workload_id, spec=pack.workload(workload_id), pack=pack,
                              data_root=REPO, run_dir=tmp_path, device="cpu", init_from=model_dir)
    context.out_dir.mkdir(parents=True)
    with pytest.raises(WorkloadNotSupported) as raised:
        inference.run(context)
    return context, raised.value


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="checks the CPU build, which has no weight-only kernels")
def test_workload_records_not_supported(model_dir, tmp_path):
    from certification.records import read_json

    context, error = run_unsupported_workload("infer-llama-int8wo", model_dir, tmp_path)
    assert error.details["data_type"] == "int8_weight_only"
    assert read_json(context.out_dir / "config.json")["data_type"]["supported"] is False
    assert not (context.out_dir / "lambada.jsonl").exists()


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="checks the CPU build, which has no weight-only kernels")
def test_not_supported_reason_in_chinese(model_dir, tmp_path):
    set_language("zh")

    _context, error = run_unsupported_workload("infer-llama-int8wo", model_dir, tmp_path)

    assert error.localized.startswith("int8_weight_only：其激活需要 bf16 或 fp16 内核，而这两种在此处都无法运行（bf16: ")
    assert str(error).startswith("int8_weight_only is not supported on this device: its activations need bf16 or fp16 kernels")


def sft_texts(name: str, count: int) -> list[str]:
    lines = (REPO / "data" / "sft" / name).read_text(encoding="utf-8").splitlines()[:count]
    return [json.loads(line)["src"] for line in lines]


def hooked_input_absmax(model_dir, tokenizer, texts: list[str]) -> dict[str, float]:
    """Input abs max of each linear layer, observed with plain forward hooks on a fresh copy of the model."""
    model, _ = datatypes.load_model(datatypes.saved_model_loader(model_dir), "fp32", tokenizer)
    names = {id(layer): name for name, layer in model.named_sublayers()}
    seen: dict[str, float] = {}

    def observe(layer, inputs):
        name = names[id(layer)]
        seen[name] = max(seen.get(name, 0.0), float(inputs[0].abs().max()))

    hooks = [linear.register_forward_pre_hook(observe) for _, _, linear in datatypes.quantized_linears(model)]
    with paddle.no_grad():
        for text in texts:
            model(input_ids=paddle.to_tensor([[tokenizer.bos_token_id, *tokenizer.encode(text)][:256]], dtype="int64"))
    for hook in hooks:
        hook.remove()
    return seen


def test_ptq_calibration_on_cpu(model_dir, tokenizer):
    zh, en = sft_texts("alpaca_zh_demo_train.json", 4), sft_texts("alpaca_en_demo_train.json", 4)
    model, _ = datatypes.load_model(datatypes.saved_model_loader(model_dir), "fp32", tokenizer)
    linears = len(datatypes.quantized_linears(model))
    scales_zh = datatypes.calibrate(model, tokenizer, zh)
    # Paddle's observers replaced every linear layer but the LM head, and saw what the hooks see.
    assert len(scales_zh) == linears == len(datatypes.quantized_linears(model, observed=True))
    expected = hooked_input_absmax(model_dir, tokenizer, zh)
    assert scales_zh.keys() == expected.keys()
    for name, value in scales_zh.items():
        assert value == pytest.approx(expected[name], rel=1e-6), name
    model_en, _ = datatypes.load_model(datatypes.saved_model_loader(model_dir), "fp32", tokenizer)
    scales_en = datatypes.calibrate(model_en, tokenizer, en)
    assert datatypes.calibration_record(scales_zh, 4, "float32")["scales_sha256"] != \
        datatypes.calibration_record(scales_en, 4, "float32")["scales_sha256"]


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="checks the CPU build, which has no int8 GEMM kernel")
def test_a8w8_records_calibration_on_cpu(model_dir, tmp_path):
    import hashlib

    from certification.records import read_json

    pack = load_rule_pack("smoke-2026.1")
    context, error = run_unsupported_workload("infer-llama-a8w8", model_dir, tmp_path)
    record = read_json(context.out_dir / "config.json")["data_type"]
    assert record["supported"] is False
    assert "not registered" in record["reason"]
    calibration = record["calibration"]
    assert calibration["samples"] == pack.workload("infer-llama-a8w8")["hyperparameters"]["fixed"]["calibration_samples"]
    assert calibration["datasets"] == ["sft_zh_train", "sft_en_train"]
    scales_bytes = (context.out_dir / calibration["scales_file"]).read_bytes()
    assert hashlib.sha256(scales_bytes).hexdigest() == calibration["scales_sha256"]
    assert error.details["calibration_scales_sha256"] == calibration["scales_sha256"]
    scales = json.loads(scales_bytes)
    assert len(scales) == calibration["layers"] == record["quantized_layers"]
    assert all(value > 0 for value in scales.values())
    assert not (context.out_dir / "lambada.jsonl").exists()
