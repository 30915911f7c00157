"""Continuous batching in the agent's server: each request's greedy tokens equal those of decoding it alone.

The requests differ in prompt length and output length, arrive alone or
together (then they are prefilled in one left-padded batch) and join the
running batch at different decode steps. The models are the tiny LLaMA (SentencePiece)
and the tiny Qwen2 (byte-level BPE), built from their pack presets.
"""

from __future__ import annotations

import random

import pytest

paddle = pytest.importorskip("paddle")

from agent.inference.decoding import RunningBatch  # noqa: E402
from agent.inference.server import BatchingEngine  # noqa: E402
from agent.workloads.common import load_tokenizer  # noqa: E402
from agent.workloads.models import build_model, model_config  # noqa: E402
from certification.rulepack import load_rule_pack  # noqa: E402
from tests.agent.test_lambada_targets import REPO  # noqa: E402

pytestmark = pytest.mark.slow

MODELS = {"llama-tiny": "smoke-2026.1", "qwen2-tiny": "tiny-2026.1"}
PROMPTS = ["你好", "The quick brown fox jumps over the lazy dog, and then", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
           "Hello", "北京是中国的首都，上海是", "def add(a, b):\n    return", "x", "A somewhat longer prompt about accelerators and Paddle"]


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_and_tokenizer(request):
    pack = load_rule_pack(MODELS[request.param])
    preset = pack.data["models"][request.param]
    tokenizer_entry = pack.data["tokenizers"][preset["tokenizer"]]
    tokenizer = load_tokenizer(REPO / tokenizer_entry["path"], tokenizer_entry["kind"], tokenizer_entry.get("class"))
    # A wide initializer makes attention depend on positions and padding, so a wrong mask or position id changes tokens.
    model = build_model(preset, {**model_config(preset, {"dropout": 0.0}, "cpu"), "initializer_range": 0.5}, seed=7)
    model.eval()
    return model, tokenizer


def prompt_ids(tokenizer, text: str) -> list[int]:
    return [tokenizer.bos_token_id, *tokenizer.encode(text)]


def decode_alone(model, ids: list[int], max_tokens: int) -> list[int]:
    """Greedy tokens of one request decoded on its own with PaddleNLP's `generate`."""
    with paddle.no_grad():
        generated, _ = model.generate(input_ids=paddle.to_tensor([ids], dtype="int64"), attention_mask=paddle.ones([1, len(ids)], dtype="int64"),
                                      max_new_tokens=max_tokens, decode_strategy="greedy_search", eos_token_id=None, pad_token_id=0, use_cache=True)
    return generated.numpy().tolist()[0]


def run_arrivals(model, requests, max_rows: int):
    """Decode (prompt ids, output tokens, arrival step) requests with a RunningBatch. Return the outputs and the per-step records."""
    batch, outputs, waiting = RunningBatch(model), [[] for _ in requests], list(range(len(requests)))
    record = {"widths": [], "sizes": [], "prefills": []}
    step = 0
    while waiting or len(batch):
        # The requests that have arrived by this step are prefilled together.
        arrived = [index for index in waiting if requests[index][2] <= step][:max_rows - len(batch)]
        if arrived:
            for index in arrived:
                waiting.remove(index)
            prefilled = batch.prefill([requests[index][0] for index in arrived])
            record["prefills"].append(len(arrived))
            for index, token in zip(arrived, prefilled.tokens):
                outputs[index].append(token)
            keep = [len(outputs[index]) < requests[index][1] for index in arrived]
            joining = prefilled.select(keep)
            if joining is not None:
                assert int(joining.mask.shape[1]) == max(joining.lengths)  # select drops padding no kept row needs
                batch.add([index for index, kept in zip(arrived, keep) if kept], joining)
        if len(batch):
            record["sizes"].append(len(batch))
            for index, token in zip(batch.owners, batch.step()):
                outputs[index].append(token)
            batch.remove([len(outputs[index]) < requests[index][1] for index in batch.owners])
            record["widths"].append(batch.width)
            assert batch.width == max(batch.lengths, default=0)  # no padding column beyond the longest row
        step += 1
    return outputs, record


def test_running_batch_matches_decoding_alone(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rng = random.Random(3)
    # (prompt ids, output tokens, the step at which the request arrives)
    requests = [(prompt_ids(tokenizer, text), rng.randrange(1, 24), rng.randrange(0, 16)) for text in PROMPTS]
    expected = [decode_alone(model, ids, count) for ids, count, _ in requests]

    outputs, record = run_arrivals(model, requests, max_rows=4)

    for index, output in enumerate(outputs):
        assert output == expected[index], f"request {index}: {PROMPTS[index]!r}"
    assert max(record["sizes"]) == 4
    assert len(set(record["sizes"])) > 2  # rows joined and left at different steps
    assert record["widths"][-1] == 0


def test_prompts_of_different_lengths_prefilled_together(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    # Two groups arrive at once: the first with prompts of 2 to 21 tokens, the
    # second while the first still decodes. One request of each group ends
    # with its prefill's token, so it never joins the running batch.
    counts = [7, 1, 12, 3, 9, 1, 5, 14]
    arrivals = [0, 0, 0, 0, 4, 4, 4, 4]
    requests = [(prompt_ids(tokenizer, text), count, step) for text, count, step in zip(PROMPTS, counts, arrivals)]
    assert len({len(ids) for ids, _, _ in requests}) >= 6
    expected = [decode_alone(model, ids, count) for ids, count, _ in requests]

    outputs, record = run_arrivals(model, requests, max_rows=8)

    for index, output in enumerate(outputs):
        assert output == expected[index], f"request {index}: {PROMPTS[index]!r}"
    assert record["prefills"] == [4, 4]
    assert record["widths"][-1] == 0


def test_prefill_pads_each_row_to_its_first_token(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    prompts = [prompt_ids(tokenizer, text) for text in PROMPTS]

    prefilled = RunningBatch(model).prefill(prompts)

    assert prefilled.lengths == [len(ids) for ids in prompts]
    assert prefilled.mask.numpy().sum(axis=1).tolist() == prefilled.lengths
    assert prefilled.tokens == [decode_alone(model, ids, 1)[0] for ids in prompts]
    for key, value in prefilled.cache:
        assert bool(paddle.isfinite(key).all())
        assert bool(paddle.isfinite(value).all())


def test_prefill_rejects_empty_prompt(model_and_tokenizer):
    model, _ = model_and_tokenizer
    with pytest.raises(ValueError, match=r"lengths \[2, 0\]"):
        RunningBatch(model).prefill([[1, 2], []])


def collect(completion) -> tuple[str, str]:
    text = ""
    while True:
        kind, value = completion.events.get(timeout=120)
        if kind == "text":
            text += value
        else:
            return text, value


def test_engine_streams_text_of_decoding_alone(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    engine = BatchingEngine(model, tokenizer, "tiny", max_batch_size=3)
    lengths = [9, 2, 6, 1, 12, 4]
    # Queued before the engine starts: three requests start together and the
    # others join one by one as short ones leave.
    completions = [engine.submit(text, count, ignore_eos=True) for text, count in zip(PROMPTS, lengths)]
    engine.start()
    try:
        replies = [collect(completion) for completion in completions]
    finally:
        engine.stop()

    for completion, (text, reason), count in zip(completions, replies, lengths):
        expected = decode_alone(model, completion.prompt_ids, count)
        assert completion.generated == expected
        assert text == tokenizer.decode(expected, skip_special_tokens=True)
        assert reason == "length"
    assert engine.largest_batch == 3
    assert engine.batches < sum(lengths) - len(lengths)
    assert engine.largest_prefill == 3  # the three requests queued first are prefilled in one pass
    assert engine.prefills < len(lengths)


def test_engine_stops_at_eos(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids = prompt_ids(tokenizer, PROMPTS[1])
    first = decode_alone(model, ids, 1)[0]
    # Treat the model's first greedy token for this prompt as EOS.
    engine = BatchingEngine(model, tokenizer, "tiny")
    engine.stream.eos_token_id = first
    stopped = engine.submit(PROMPTS[1], 5, ignore_eos=False)
    ignored = engine.submit(PROMPTS[1], 5, ignore_eos=True)
    engine.start()
    try:
        assert collect(stopped) == ("", "stop")
        assert collect(ignored)[1] == "length"
    finally:
        engine.stop()
    assert stopped.generated == []
    assert ignored.generated == decode_alone(model, ids, 5)


def test_engine_retires_cancelled_request(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    engine = BatchingEngine(model, tokenizer, "tiny")
    # The HTTP handler sets `cancelled` when the client has gone away.
    cancelled = engine.submit(PROMPTS[0], 50, ignore_eos=True)
    cancelled.cancelled = True
    other = engine.submit(PROMPTS[1], 4, ignore_eos=True)
    engine.start()
    try:
        assert collect(other)[1] == "length"
    finally:
        engine.stop()
    assert len(cancelled.generated) == 2  # the prefill's token and one decode step's
    assert not cancelled.done


def test_static_scheduler_decodes_one_batch(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    engine = BatchingEngine(model, tokenizer, "tiny", max_batch_size=4, scheduler="static")
    completions = [engine.submit(text, count, ignore_eos=True) for text, count in zip(PROMPTS[:4], [3, 5, 2, 4])]
    engine.start()
    try:
        replies = [collect(completion) for completion in completions]
    finally:
        engine.stop()
    assert [len(completion.generated) for completion in completions] == [3, 5, 2, 4]
    assert [reason for _, reason in replies] == ["length"] * 4
    assert engine.batches == 1


def test_unknown_scheduler_rejected(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="'iteration'"):
        BatchingEngine(model, tokenizer, "tiny", scheduler="iteration")
