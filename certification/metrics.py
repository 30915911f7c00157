"""Metric functions of the standard, registered by name.

Every function states what it divides by and where its formula comes from.
"The standard" below is the PaddlePaddle large-model toolchain adaptation
certification standard as the rule pack restates it: the `settings` of a
rule pack carry the numbers, these functions carry the formulas.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rouge_score import rouge_scorer

from certification.records import RecordsInvalid, decode_float

METRICS: dict[str, Callable] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Add the decorated function to METRICS under `name`."""

    def decorate(function: Callable) -> Callable:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = function
        return function

    return decorate


# ROUGE -----------------------------------------------------------------------

# Han ideographs (with extensions A to F and compatibility ideographs), kana
# and Hangul syllables: each character is one token.
CJK_CHARACTERS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af\U00020000-\U0002fa1f"
TOKEN_PATTERN = re.compile(rf"[{CJK_CHARACTERS}]|(?:(?![{CJK_CHARACTERS}])[^\W\d_])+|\d+(?:\.\d+)?")
ROUGE_VARIANTS = ("rouge1", "rouge2", "rougeL")


class CjkWordTokenizer:
    """ROUGE tokenizer: every CJK character is a token; other text splits into lower-case words and numbers.

    Text is NFKC-normalised first, so full-width letters and digits count as
    their ASCII forms. Punctuation and spaces are dropped, as rouge-score's
    default tokenizer drops them. No stemming.
    """

    name = "cjk-char-word"

    def tokenize(self, text: str) -> list[str]:
        normalized = unicodedata.normalize("NFKC", text or "").lower()
        return TOKEN_PATTERN.findall(normalized)


@register("rouge_per_sample")
def rouge_per_sample(pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Return ROUGE-1, ROUGE-2 and ROUGE-L F1 of each (prediction, reference) pair on the 0-100 scale.

    F1 = 2PR / (P + R) from rouge-score 0.1.2 (Lin 2004, "ROUGE: A Package for
    Automatic Evaluation of Summaries"); P divides the overlap by the
    prediction's n-grams, R by the reference's. An empty prediction scores 0.
    """
    scorer = rouge_scorer.RougeScorer(list(ROUGE_VARIANTS), use_stemmer=False, tokenizer=CjkWordTokenizer())
    scores = {variant: np.zeros(len(pairs)) for variant in ROUGE_VARIANTS}
    for index, (prediction, reference) in enumerate(pairs):
        result = scorer.score(reference or "", prediction or "")
        for variant in ROUGE_VARIANTS:
            scores[variant][index] = 100.0 * result[variant].fmeasure
    return scores


def rouge_per_sample_pair(first: Sequence[tuple[str, str]], second: Sequence[tuple[str, str]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Return `rouge_per_sample` of two pair lists, scoring each distinct (prediction, reference) pair once.

    Greedy outputs of the vendor and the reference are mostly identical, so
    this about halves the work of comparing them.
    """
    distinct = list(dict.fromkeys([*first, *second]))
    scores = rouge_per_sample(distinct)
    position = {pair: index for index, pair in enumerate(distinct)}

    def pick(pairs: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        indices = np.array([position[pair] for pair in pairs], dtype=np.int64)
        return {variant: values[indices] if len(indices) else np.zeros(0) for variant, values in scores.items()}

    return pick(first), pick(second)


@register("rouge")
def rouge(pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Return the mean F1 per ROUGE variant, 0-100, dividing by the number of pairs (empty predictions included)."""
    per_sample = rouge_per_sample(pairs)
    return {variant: float(values.mean()) if len(values) else 0.0 for variant, values in per_sample.items()}


# Loss curves ---------------------------------------------------------------


@dataclass(frozen=True)
class LossWindows:
    """Window means of a loss curve, with the steps that were missing or not finite."""

    means: list[float]
    missing_steps: list[int]
    non_finite_steps: list[int]


@register("loss_windows")
def loss_windows(losses: dict[int, float], steps: int, window: int) -> LossWindows:
    """Return the means of consecutive `window`-step windows over steps 1..`steps`.

    Each mean divides the sum of the window's losses by `window` (the
    standard's early-accuracy rule: 50 windows of 20 steps over steps 1-1000).
    A window with a missing or non-finite step has a NaN mean.
    """
    missing = [step for step in range(1, steps + 1) if step not in losses]
    non_finite = sorted(step for step, loss in losses.items() if not math.isfinite(loss))
    means = []
    for start in range(1, steps - window + 2, window):
        values = [losses.get(step, math.nan) for step in range(start, start + window)]
        for step, value in zip(range(start, start + window), values):
            check_magnitude(value, step, "loss")
        means.append(math.fsum(values) / window if all(math.isfinite(value) for value in values) else math.nan)
    return LossWindows(means, missing, non_finite)


# The largest magnitude of a step record's number (loss, tokens per second, seconds), far above any real value.
# A product of two such numbers is at most 1e200, so sums of values that passed check_magnitude stay under the float
# maximum (about 1.8e308) for any step count a run can have, and math.fsum of them cannot overflow.
STEP_VALUE_MAX = 1e100


def check_magnitude(value: float, step: Any, key: str) -> None:
    """Raise RecordsInvalid, naming the step, the key and the value, for a finite number above STEP_VALUE_MAX in magnitude."""
    if math.isfinite(value) and abs(value) > STEP_VALUE_MAX:
        raise RecordsInvalid(f"step {step} has {key} {value!r}, larger in magnitude than {STEP_VALUE_MAX:g}",
                             f"第 {step} 步的 {key} 是 {value!r}，绝对值大于 {STEP_VALUE_MAX:g}")


@dataclass(frozen=True)
class RelativeErrors:
    """Per-position relative errors with their mean and maximum."""

    values: list[float]
    mean: float
    max: float


@register("relative_error")
def relative_errors(measured: Sequence[float], reference: Sequence[float]) -> RelativeErrors:
    """Return |measured - reference| / |reference| per position, with the mean (divided by the count) and max.

    A zero reference gives an infinite error unless the measured value is zero
    too; any NaN makes the mean and max NaN.
    """
    if len(measured) != len(reference):
        raise RecordsInvalid(f"{len(measured)} measured values for {len(reference)} reference values",
                             f"测得值有 {len(measured)} 个，参考值有 {len(reference)} 个，数量不一致")
    values = [_relative_error(value, base) for value, base in zip(measured, reference)]
    if not values:
        return RelativeErrors([], math.nan, math.nan)
    has_nan = any(math.isnan(value) for value in values)
    mean = math.nan if has_nan else _sum_of_non_negative(values) / len(values)
    return RelativeErrors(values, mean, math.nan if has_nan else max(values))


def _sum_of_non_negative(values: Sequence[float]) -> float:
    """Return math.fsum(values), or infinity where the exact sum is beyond the float range (no value is negative)."""
    try:
        return math.fsum(values)
    except OverflowError:
        return math.inf


def _relative_error(value: float, base: float) -> float:
    if math.isnan(value) or math.isnan(base):
        return math.nan
    if base == 0:
        return 0.0 if value == 0 else math.inf
    return abs(value - base) / abs(base)


# Validation loss and LAMBADA ------------------------------------------------


@register("validation_loss")
def validation_loss(record: dict) -> float:
    """Return the token-level mean cross-entropy of a validation.json record.

    With `loss_sum` present the loss is recomputed as loss_sum / tokens, the
    summed token losses divided by the target tokens of the whole validation
    set. Without it the recorded token-level mean `loss` is used.
    """
    tokens = record.get("tokens")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens <= 0:
        raise RecordsInvalid(f"validation.json has no positive integer `tokens`: {tokens!r}",
                             f"validation.json 的 `tokens` 不是正整数：{tokens!r}")
    key = "loss_sum" if "loss_sum" in record else "loss"
    if record.get(key) is None:
        raise RecordsInvalid(f"validation.json has no {key}", f"validation.json 没有 {key}")
    loss = decode_float(record[key])
    return loss / tokens if key == "loss_sum" else loss


@dataclass(frozen=True)
class LambadaResult:
    """LAMBADA accuracy on the 0-100 scale and the item counts behind it."""

    accuracy: float
    correct: int
    recorded: int
    expected: int
    duplicate_indices: list[int]


@register("lambada_accuracy")
def lambada_accuracy(items: Iterable[dict], expected_items: int) -> LambadaResult:
    """Return 100 * correct / `expected_items`.

    The denominator is the size of the test set named in the rule pack (5153
    passages of OpenAI's LAMBADA test set), not the number of recorded items,
    so a missing item counts as wrong. An item counts once, by its index.
    """
    correct_by_index: dict[int, bool] = {}
    duplicates = []
    for item in items:
        index = _item_index(item)
        if index in correct_by_index:
            duplicates.append(index)
        correct_by_index[index] = item.get("correct") is True
    in_range = {index: value for index, value in correct_by_index.items() if 0 <= index < expected_items}
    correct = sum(in_range.values())
    return LambadaResult(100.0 * correct / expected_items, correct, len(in_range), expected_items, duplicates)


def _item_index(item: dict) -> int:
    """Return the integer `index` of an evaluation record, or raise RecordsInvalid naming the record's value."""
    value = item.get("index")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # int() raises OverflowError for an infinite float
        raise RecordsInvalid(f"an evaluation record has the index {value!r}, not an integer",
                             f"有一条评测记录的 index 是 {value!r}，不是整数") from None


def correctness_vector(items: Iterable[dict], expected_items: int) -> np.ndarray:
    """Return 1.0 for each correct item index in 0..expected_items-1 and 0.0 otherwise."""
    vector = np.zeros(expected_items)
    correct = [_item_index(item) for item in items if item.get("correct") is True]
    indices = np.array([index for index in correct if 0 <= index < expected_items], dtype=np.int64)
    vector[indices] = 1.0
    return vector


@register("discordant_pairs")
def discordant_pairs(measured: np.ndarray, reference: np.ndarray) -> dict[str, int]:
    """Count the items that only one side got right (the b and c cells of McNemar's paired test)."""
    measured_only = int(np.sum((measured == 1) & (reference == 0)))
    reference_only = int(np.sum((measured == 0) & (reference == 1)))
    return {"measured_only_correct": measured_only, "reference_only_correct": reference_only}


# Throughput ----------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """Training tokens per second per card over a step range, in three averages."""

    mean: float
    mean_after_warmup: float
    time_weighted: float
    steps: int


@register("throughput")
def throughput(rows: Sequence[dict], first_step: int, last_step: int, warmup_steps: int = 10) -> Throughput:
    """Return tokens/s/card averaged over steps `first_step`..`last_step` inclusive.

    `mean` divides the sum of per-step tokens_per_second_per_card by the number
    of steps (the standard: "mean of the first 1000 steps", read as the
    arithmetic mean of per-step values). `mean_after_warmup` does the same from
    step first_step + warmup_steps. `time_weighted` divides the tokens per card
    by the seconds of those steps: sum(rate * seconds) / sum(seconds).
    """
    selected = [row for row in rows if first_step <= row["step"] <= last_step]
    rates = [_step_number(row, "tokens_per_second_per_card") for row in selected]
    later = [rate for row, rate in zip(selected, rates) if row["step"] >= first_step + warmup_steps]
    seconds = [_step_number(row, "step_seconds") for row in selected]
    total_seconds = math.fsum(seconds)
    weighted = math.fsum(rate * second for rate, second in zip(rates, seconds)) / total_seconds if total_seconds > 0 else math.nan
    return Throughput(_mean(rates), _mean(later), weighted, len(selected))


@register("per_tflops")
def per_tflops(tokens_per_second_per_card: float, peak_tflops: float) -> float:
    """Divide a per-card rate by the card's peak dense TFLOPS for the data type (the standard's tokens/TFLOPS)."""
    if not peak_tflops > 0:
        raise ValueError(f"peak TFLOPS must be positive, got {peak_tflops!r}")
    return tokens_per_second_per_card / peak_tflops


def _step_number(row: dict, key: str) -> float:
    """Return the number `key` of a steps.jsonl record, or raise RecordsInvalid naming the step and the value."""
    value = row.get(key)
    problem = f"step {row.get('step')} has {key} {value!r}, not a number"
    problem_zh = f"第 {row.get('step')} 步的 {key} 是 {value!r}，不是数字"
    if value is None:
        raise RecordsInvalid(problem, problem_zh)
    try:
        number = decode_float(value)
    except RecordsInvalid:
        if isinstance(value, int) and not isinstance(value, bool):
            raise  # an integer too large for a float, which decode_float names
        raise RecordsInvalid(problem, problem_zh) from None
    if not math.isfinite(number):
        raise RecordsInvalid(f"step {row.get('step')} has {key} {value!r}, not a finite number",
                             f"第 {row.get('step')} 步的 {key} 是 {value!r}，不是有限数")
    check_magnitude(number, row.get("step"), key)
    return number


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values) if values else math.nan


# Confidence intervals ------------------------------------------------------


@register("paired_bootstrap")
def paired_bootstrap(measured: np.ndarray, reference: np.ndarray, resamples: int = 2000, confidence: float = 0.95, seed: int = 20260101) -> tuple[float, float]:
    """Return a percentile bootstrap interval for mean(measured) - mean(reference) over paired items.

    Each resample draws item indices with replacement and divides each side's
    sum by the item count (Efron and Tibshirani 1993, percentile interval).
    The generator is seeded, so the same inputs always give the same interval.
    """
    if len(measured) != len(reference) or len(measured) == 0:
        raise RecordsInvalid(f"paired bootstrap needs as many measured as reference values, and at least one, got {len(measured)} and {len(reference)}",
                             f"配对自助法需要数量相同且至少一个的测得值与参考值，实际为 {len(measured)} 个和 {len(reference)} 个")
    generator = np.random.default_rng(seed)
    differences = np.asarray(measured, dtype=float) - np.asarray(reference, dtype=float)
    values, counts = np.unique(differences, return_counts=True)
    if len(values) <= FEW_DISTINCT_VALUES:
        means = _resample_means_by_counts(generator, values, counts, resamples)
    else:
        means = _resample_means_by_index(generator, differences, resamples)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


# Paired differences of right/wrong items (LAMBADA) take only the values -1, 0
# and 1 (times 100), so their resamples are drawn as counts per value.
FEW_DISTINCT_VALUES = 16


def _resample_means_by_counts(generator: np.random.Generator, values: np.ndarray, counts: np.ndarray, resamples: int) -> np.ndarray:
    """Draw resample means as multinomial counts over the distinct values.

    Drawing n items with replacement is the same as drawing how many times
    each distinct value is picked, Multinomial(n, counts / n), so this gives
    the bootstrap distribution of the mean in O(resamples) instead of
    O(resamples x n).
    """
    total = int(counts.sum())
    draws = generator.multinomial(total, counts / total, size=resamples)
    return draws @ values / total


def _resample_means_by_index(generator: np.random.Generator, differences: np.ndarray, resamples: int) -> np.ndarray:
    means = []
    for start in range(0, resamples, 250):
        count = min(250, resamples - start)
        indices = generator.integers(0, len(differences), size=(count, len(differences)))
        means.append(differences[indices].mean(axis=1))
    return np.concatenate(means)
