"""Sources of blind pairs: the vendor output and the reference output for the same prompt.

Each source reads two verified bundles and yields `PromptPair`s. Fine-tuning
workloads pair the rows of predictions.jsonl by (dataset, index), the same
key the ROUGE criterion uses; inference workloads pair generations.jsonl by
prompt id; Stable Diffusion workloads pair images by prompt id through
certification.criteria_sd.image_pairs and show them as data URIs.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptPair:
    prompt_id: str
    prompt: str
    vendor: str
    reference: str


def text_pairs(vendor_bundle, reference_bundle, workload: str) -> Iterator[PromptPair]:
    path = f"workloads/{workload}/predictions.jsonl"
    if not (vendor_bundle.has(path) and reference_bundle.has(path)):
        return
    reference = {(row.get("dataset"), row.get("index")): row for row in reference_bundle.iter_jsonl(path)}
    for row in vendor_bundle.iter_jsonl(path):
        key = (row.get("dataset"), row.get("index"))
        if key in reference:
            yield PromptPair(f"{key[0]}#{key[1]}", str(row.get("prompt", "")), str(row.get("prediction", "")), str(reference[key].get("prediction", "")))


def generation_pairs(vendor_bundle, reference_bundle, workload: str) -> Iterator[PromptPair]:
    path = f"workloads/{workload}/generations.jsonl"
    if not (vendor_bundle.has(path) and reference_bundle.has(path)):
        return
    reference = {str(row.get("id", row.get("index"))): row for row in reference_bundle.iter_jsonl(path)}
    for row in vendor_bundle.iter_jsonl(path):
        prompt_id = str(row.get("id", row.get("index")))
        if prompt_id in reference:
            yield PromptPair(prompt_id, str(row.get("prompt", "")), str(row.get("prediction", "")), str(reference[prompt_id].get("prediction", "")))


def image_data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode("ascii")


def sd_image_pairs(vendor_bundle, reference_bundle, workload: str) -> Iterator[PromptPair]:
    from certification.criteria import RecordsInvalid
    from certification.criteria_sd import image_pairs

    try:
        pairs = image_pairs(vendor_bundle, reference_bundle, workload)
    except RecordsInvalid:
        return
    prompts = _sd_prompts(vendor_bundle, workload)
    for pair in pairs:
        vendor_image = image_data_uri(vendor_bundle.read_bytes(pair.vendor_path))
        reference_image = image_data_uri(reference_bundle.read_bytes(pair.reference_path))
        yield PromptPair(pair.prompt_id, prompts.get(pair.prompt_id, ""), vendor_image, reference_image)


def _sd_prompts(bundle, workload: str) -> dict[str, str]:
    path = f"workloads/{workload}/images.jsonl"
    return {str(row.get("prompt_id")): str(row.get("prompt", "")) for row in bundle.iter_jsonl(path)} if bundle.has(path) else {}


PAIR_SOURCES: dict[str, tuple[str, Callable[..., Iterator[PromptPair]]]] = {
    "sft": ("text", text_pairs),
    "lora": ("text", text_pairs),
    "infer": ("text", generation_pairs),
    "sd_sft": ("image", sd_image_pairs),
    "sd_infer": ("image", sd_image_pairs),
}


def register_pair_source(kind: str, media: str, source: Callable[..., Iterator[PromptPair]]) -> None:
    PAIR_SOURCES[kind] = (media, source)
