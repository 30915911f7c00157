import math

import numpy as np
import pytest

from certification import metrics
from certification.records import RecordsInvalid


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("今天天气很好", ["今", "天", "天", "气", "很", "好"]),
        ("Hello, World!", ["hello", "world"]),
        ("价格是3.5元", ["价", "格", "是", "3.5", "元"]),
        ("GPU训练2024年", ["gpu", "训", "练", "2024", "年"]),
        ("ＡＢＣ１２", ["abc", "12"]),
        ("", []),
    ],
)
def test_tokenizer_splits_cjk_and_words(text, tokens):
    assert metrics.CjkWordTokenizer().tokenize(text) == tokens


def test_rouge_identical_text_scores_100():
    scores = metrics.rouge([("今天天气很好", "今天天气很好"), ("the cat", "the cat")])

    assert scores == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}


def test_rouge_empty_prediction_counts_as_zero():
    scores = metrics.rouge([("今天天气很好", "今天天气很好"), ("", "今天天气很好")])

    assert scores["rouge1"] == pytest.approx(50.0)


def test_rouge_partial_chinese_overlap():
    # 4 of 6 characters shared: P = R = 4/6, so F1 = 66.67.
    scores = metrics.rouge([("今天天气不错", "今天天气很好")])

    assert scores["rouge1"] == pytest.approx(200 / 3)


def test_loss_windows_means_and_flags():
    losses = {step: float(step) for step in range(1, 41)}
    losses[25] = math.nan

    result = metrics.loss_windows(losses, 60, 20)

    assert result.means[0] == pytest.approx(10.5)
    assert math.isnan(result.means[1])
    assert math.isnan(result.means[2])
    assert result.non_finite_steps == [25]
    assert result.missing_steps == list(range(41, 61))


def test_relative_errors_mean_and_max():
    errors = metrics.relative_errors([1.01, 2.0, 2.7], [1.0, 2.0, 3.0])

    assert errors.values == pytest.approx([0.01, 0.0, 0.1])
    assert errors.mean == pytest.approx(0.11 / 3)
    assert errors.max == pytest.approx(0.1)


def test_relative_errors_zero_reference():
    assert metrics.relative_errors([1.0], [0.0]).max == math.inf
    assert metrics.relative_errors([0.0], [0.0]).max == 0.0


def test_relative_errors_mean_beyond_float_range():
    errors = metrics.relative_errors([1e100, 1e100], [1e-208, 1e-208])

    assert errors.values == [1e308, 1e308]
    assert errors.mean == math.inf
    assert errors.max == 1e308


def test_loss_windows_reject_huge_loss():
    losses = {step: 2.0 for step in range(1, 41)}
    losses[23] = -1e300

    with pytest.raises(RecordsInvalid, match=r"step 23 has loss -1e\+300, larger in magnitude than 1e\+100"):
        metrics.loss_windows(losses, 40, 20)


def test_loss_windows_keep_largest_allowed_loss_exact():
    losses = {step: 1.0 for step in range(1, 21)}
    losses[5] = 1e100

    assert metrics.loss_windows(losses, 20, 20).means == [(1e100 + 19.0) / 20]


def test_validation_loss_prefers_loss_sum():
    assert metrics.validation_loss({"loss": 9.0, "loss_sum": 300.0, "tokens": 100}) == 3.0
    assert metrics.validation_loss({"loss": "NaN", "tokens": 10}) != metrics.validation_loss({"loss": "NaN", "tokens": 10})


def test_validation_loss_rejects_zero_tokens():
    with pytest.raises(RecordsInvalid) as caught:
        metrics.validation_loss({"loss": 1.0, "tokens": 0})

    assert str(caught.value) == "validation.json has no positive integer `tokens`: 0"
    assert caught.value.problem_zh == "validation.json 的 `tokens` 不是正整数：0"


# An integer of 310 digits, beyond the largest float (about 1.8e308).
HUGE = 10**309


@pytest.mark.parametrize("call, english, chinese", [
    (lambda: metrics.relative_errors([1.0], [1.0, 2.0]), "1 measured values for 2 reference values", "测得值有 1 个，参考值有 2 个，数量不一致"),
    (lambda: metrics.throughput([{"step": 3, "tokens_per_second_per_card": "fast", "step_seconds": 1.0}], 1, 10),
     "step 3 has tokens_per_second_per_card 'fast', not a number", "第 3 步的 tokens_per_second_per_card 是 'fast'，不是数字"),
    (lambda: metrics.throughput([{"step": 4, "tokens_per_second_per_card": 1.0}], 1, 10),
     "step 4 has step_seconds None, not a number", "第 4 步的 step_seconds 是 None，不是数字"),
    (lambda: metrics.lambada_accuracy([{"index": "first", "correct": True}], 10),
     "an evaluation record has the index 'first', not an integer", "有一条评测记录的 index 是 'first'，不是整数"),
    (lambda: metrics.correctness_vector([{"correct": True}], 10),
     "an evaluation record has the index None, not an integer", "有一条评测记录的 index 是 None，不是整数"),
    (lambda: metrics.validation_loss({"loss": {"mean": 1.0}, "tokens": 10}),
     "invalid number {'mean': 1.0}: expected a number, 'NaN', 'Infinity' or '-Infinity'",
     "无效的数值 {'mean': 1.0}：应为数字、'NaN'、'Infinity' 或 '-Infinity'"),
    (lambda: metrics.paired_bootstrap([], []),
     "paired bootstrap needs as many measured as reference values, and at least one, got 0 and 0",
     "配对自助法需要数量相同且至少一个的测得值与参考值，实际为 0 个和 0 个"),
    # JSON allows an integer too large for a float, and json reads 1e999 as infinity.
    (lambda: metrics.throughput([{"step": 5, "tokens_per_second_per_card": HUGE, "step_seconds": 1.0}], 1, 10),
     f"invalid number {HUGE}: it is outside the range of a float", f"无效的数值 {HUGE}：超出浮点数的范围"),
    (lambda: metrics.validation_loss({"loss": HUGE, "tokens": 10}),
     f"invalid number {HUGE}: it is outside the range of a float", f"无效的数值 {HUGE}：超出浮点数的范围"),
    (lambda: metrics.lambada_accuracy([{"index": math.inf, "correct": True}], 10),
     "an evaluation record has the index inf, not an integer", "有一条评测记录的 index 是 inf，不是整数"),
], ids=["relative_errors", "throughput_rate", "throughput_seconds", "lambada_index", "correctness_index", "loss_object", "bootstrap",
        "throughput_rate_out_of_range", "loss_out_of_range", "lambada_index_infinite"])
def test_metric_input_problem_in_both_languages(call, english, chinese):
    with pytest.raises(RecordsInvalid) as caught:
        call()

    assert str(caught.value) == english
    assert caught.value.problem_zh == chinese


def test_lambada_divides_by_expected_items():
    items = [{"index": index, "correct": index < 3} for index in range(5)]

    result = metrics.lambada_accuracy(items, 10)

    assert result.accuracy == pytest.approx(30.0)
    assert result.recorded == 5
    assert result.duplicate_indices == []


def test_lambada_reports_duplicates():
    result = metrics.lambada_accuracy([{"index": 1, "correct": True}, {"index": 1, "correct": True}], 4)

    assert result.duplicate_indices == [1]
    assert result.correct == 1


def test_discordant_pairs_counts():
    measured = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    reference = np.array([1.0, 0.0, 1.0, 1.0, 1.0])

    counts = metrics.discordant_pairs(measured, reference)

    assert counts == {"measured_only_correct": 1, "reference_only_correct": 2}


def test_throughput_three_means():
    rows = [{"step": step, "tokens_per_second_per_card": 100.0 if step <= 10 else 200.0, "step_seconds": 2.0 if step <= 10 else 1.0} for step in range(1, 21)]

    result = metrics.throughput(rows, 1, 20)

    assert result.mean == pytest.approx(150.0)
    assert result.mean_after_warmup == pytest.approx(200.0)
    assert result.time_weighted == pytest.approx((100 * 2 * 10 + 200 * 10) / 30)
    assert result.steps == 20


def test_per_tflops_rejects_zero_peak():
    assert metrics.per_tflops(312.0, 312.0) == 1.0
    with pytest.raises(ValueError):
        metrics.per_tflops(1.0, 0.0)


def test_bootstrap_is_deterministic_and_covers_difference():
    generator = np.random.default_rng(1)
    measured = generator.integers(0, 2, 500).astype(float)
    reference = generator.integers(0, 2, 500).astype(float)

    first = metrics.paired_bootstrap(measured, reference)
    second = metrics.paired_bootstrap(measured, reference)

    assert first == second
    assert first[0] <= measured.mean() - reference.mean() <= first[1]


def test_registry_names_every_metric():
    assert {"rouge", "loss_windows", "relative_error", "validation_loss", "lambada_accuracy", "throughput", "paired_bootstrap", "discordant_pairs"} <= set(metrics.METRICS)
    assert all(function.__doc__ for function in metrics.METRICS.values())
