"""Stable Diffusion criteria: SD has no ROUGE or LAMBADA.

SD fine-tuning is judged by loss alignment (windows of the per-step noise
prediction loss in steps.jsonl) and by human evaluation of the images of the
pack's prompt set. SD inference is judged by human evaluation and by images
per second per card divided by the card's peak TFLOPS. `settings.sd` of the rule pack may
override keys of `settings.loss_alignment` and `settings.human_evaluation` for
SD alone and names the peak's data type in `settings.sd.throughput`.

`image_pairs` lists the (prompt id, vendor image, reference image) pairs of a
workload for blind side-by-side judgement.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

from certification import metrics
from certification.bundle import VerifiedBundle
from certification.records import number_field
from certification.criteria import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    PENDING,
    CriterionContext,
    Outcome,
    RecordsInvalid,
    WorkloadRecords,
    _human_outcome,
    _reference_value,
    criterion,
    loss_window_alignment,
    peak_missing,
)

IMAGE_RECORDS = "images.jsonl"


@dataclass(frozen=True)
class ImagePair:
    """One prompt's images on both sides, as bundle member paths; `identical` when their bytes are equal."""

    prompt_id: str
    vendor_path: str
    reference_path: str
    identical: bool


def image_records(bundle: VerifiedBundle, workload_id: str) -> dict[str, dict]:
    """Return the workload's image records by prompt id, each checked against the PNG file it names.

    Raises RecordsInvalid when images.jsonl is missing, repeats a prompt id,
    or names a file that is absent from the bundle or has another sha256.
    """
    prefix = f"workloads/{workload_id}/"
    if not bundle.has(prefix + IMAGE_RECORDS):
        raise RecordsInvalid(f"{prefix}{IMAGE_RECORDS} is missing", f"缺少 {prefix}{IMAGE_RECORDS}")
    records: dict[str, dict] = {}
    for row in bundle.iter_jsonl(prefix + IMAGE_RECORDS):
        prompt_id, file = row.get("prompt_id"), row.get("file")
        if not isinstance(prompt_id, str) or not isinstance(file, str):
            raise RecordsInvalid(f"{prefix}{IMAGE_RECORDS} has a line without a string prompt_id and file",
                                 f"{prefix}{IMAGE_RECORDS} 中有一行缺少字符串 prompt_id 或 file")
        if prompt_id in records:
            raise RecordsInvalid(f"{prefix}{IMAGE_RECORDS} repeats prompt id {prompt_id!r}",
                                 f"{prefix}{IMAGE_RECORDS} 中的提示词编号 {prompt_id!r} 重复")
        path = prefix + file
        if not bundle.has(path):
            raise RecordsInvalid(f"image {path} of prompt {prompt_id!r} is not in the bundle",
                                 f"提示词 {prompt_id!r} 的图像 {path} 不在结果包中")
        if hashlib.sha256(bundle.read_bytes(path)).hexdigest() != row.get("sha256"):
            raise RecordsInvalid(f"image {path} of prompt {prompt_id!r} does not match the sha256 in {IMAGE_RECORDS}",
                                 f"提示词 {prompt_id!r} 的图像 {path} 与 {IMAGE_RECORDS} 中的 sha256 不符")
        records[prompt_id] = {**row, "path": path}
    return records


def image_pairs(vendor: VerifiedBundle, reference: VerifiedBundle, workload_id: str) -> list[ImagePair]:
    """Pair the vendor's and the reference's images of `workload_id` by prompt id, in prompt id order.

    Raises RecordsInvalid when either side's records are unusable or when the
    two sides do not cover the same prompt ids (the message names them).
    """
    return pair_records(image_records(vendor, workload_id), image_records(reference, workload_id), workload_id)


def pair_records(vendor_images: dict[str, dict], reference_images: dict[str, dict], workload_id: str) -> list[ImagePair]:
    missing = sorted(set(reference_images) - set(vendor_images))
    extra = sorted(set(vendor_images) - set(reference_images))
    if missing or extra:
        raise RecordsInvalid(f"workload {workload_id}: the vendor lacks images for prompts {missing[:10]} and has extra prompts {extra[:10]}",
                             f"工作负载 {workload_id}：厂商缺少提示词 {missing[:10]} 的图像，并多出提示词 {extra[:10]}")
    pairs = []
    for prompt_id in sorted(reference_images):
        vendor_row, reference_row = vendor_images[prompt_id], reference_images[prompt_id]
        identical = vendor_row["sha256"] == reference_row["sha256"]
        pairs.append(ImagePair(prompt_id, vendor_row["path"], reference_row["path"], identical))
    return pairs


def _sd_settings(context: CriterionContext, key: str) -> dict:
    """Return settings[key] with the SD overrides of settings.sd[key] applied."""
    return {**context.settings.get(key, {}), **(context.settings.get("sd", {}).get(key) or {})}


@criterion("sd_loss_alignment")
def sd_loss_alignment(context: CriterionContext) -> Outcome:
    """Loss alignment of the SD noise prediction loss: the loss_window_alignment rule with SD's own steps and bounds."""
    settings = {**context.settings, "loss_alignment": _sd_settings(context, "loss_alignment")}
    return loss_window_alignment(replace(context, settings=settings))


@criterion("sd_image_gsb", human=True, settings_section="sd")
def sd_image_gsb(context: CriterionContext) -> Outcome:
    """Human GSB judgement of the prompt set's images; pending until staff record a result.

    Images are always judged by people, so `human_evaluation.enabled` is not
    consulted. The images must pair up by prompt id before a result counts.
    """
    reference_images = _reference_value(lambda: image_records(context.reference.bundle, context.workload_id))
    pairs = pair_records(image_records(context.vendor.bundle, context.workload_id), reference_images, context.workload_id)
    settings = _sd_settings(context, "human_evaluation")
    identical = sum(pair.identical for pair in pairs)
    details = {"pairs": len(pairs), "identical_pairs": identical}
    result = (context.human or {}).get(context.criterion["id"])
    if not result:
        return Outcome(PENDING, "human_pending", details=details)
    outcome = _human_outcome(result, settings)
    outcome.details.update(details)
    return outcome


@criterion("images_per_second_ratio")
def images_per_second_ratio(context: CriterionContext) -> Outcome:
    """(vendor images/s/card / vendor peak) / (reference images/s/card / reference peak), against the level's bound.

    images/s/card = images generated / the sum of their seconds / cards, from
    images.jsonl; the peak is the card's dense TFLOPS for settings.sd's
    throughput data type (the standard's inference rule: images per second per
    TFLOPS at a fixed resolution and step count).
    """
    data_type = _sd_settings(context, "throughput")["data_type"]
    bound = context.throughput_bound
    if bound is None:
        return Outcome(NOT_APPLICABLE, "throughput_not_required")
    refused = peak_missing(context, data_type, bound)
    if refused is not None:
        return refused
    reference = _reference_value(lambda: images_per_second_per_card(context.reference))
    if not reference > 0:
        raise RecordsInvalid("the reference's images per second is not positive", "参考结果的每秒图像数不是正数")
    vendor = images_per_second_per_card(context.vendor)
    vendor_per_tflops = metrics.per_tflops(vendor, context.vendor_peaks[data_type])
    reference_per_tflops = metrics.per_tflops(reference, context.reference_peaks[data_type])
    ratio = vendor_per_tflops / reference_per_tflops
    passed = ratio >= bound
    details = {
        "ratio": ratio, "data_type": data_type,
        "vendor": {"images_per_second_per_card": vendor, "peak_tflops": context.vendor_peaks[data_type], "per_tflops": vendor_per_tflops},
        "reference": {"images_per_second_per_card": reference, "peak_tflops": context.reference_peaks[data_type], "per_tflops": reference_per_tflops},
    }
    code = "images_throughput_pass" if passed else "images_throughput_fail"
    return Outcome(PASS if passed else FAIL, code, vendor_per_tflops, reference_per_tflops, bound, {"ratio": ratio, "bound": bound}, details)


def images_per_second_per_card(records: WorkloadRecords) -> float:
    """Return images / sum of per-image seconds / cards from a workload's images.jsonl and config.json."""
    rows = list(image_records(records.bundle, records.workload_id).values())
    where = f"workloads/{records.workload_id}/{IMAGE_RECORDS}"
    per_image = [number_field({"seconds": math.nan, **row}, "seconds", f"the image of prompt {row['prompt_id']!r} in {where}",
                              f"{where} 中提示词 {row['prompt_id']!r} 的图像") for row in rows]
    try:
        seconds = math.fsum(per_image)
    except (OverflowError, ValueError):  # a sum beyond the float range, or Infinity plus -Infinity
        seconds = math.nan
    cards = records.config.get("cards", 1) if isinstance(records.config, dict) else 1
    if not rows or not math.isfinite(seconds) or seconds <= 0 or not isinstance(cards, int) or cards < 1:
        raise RecordsInvalid(f"workloads/{records.workload_id}/{IMAGE_RECORDS} has no images with positive, finite seconds, or config.json has no card count",
                             f"workloads/{records.workload_id}/{IMAGE_RECORDS} 中没有耗时为有限正数的图像，或 config.json 中没有卡数")
    return len(rows) / seconds / cards
