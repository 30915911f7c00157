"""Stable Diffusion criteria on hand-built run folders of the smoke pack: loss alignment, image GSB, images/s, pairing."""

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from certification.bundle import open_bundle, write_bundle
from certification.criteria import RecordsInvalid
from certification.criteria_sd import image_pairs
from certification.rulepack import load_rule_pack
from certification.verdict import Reference, judge
from tests.certification.runfolder import build_run, loss_curve, workload_config, write_json, write_jsonl
from tests.certification.test_verdict import KEY, KEYRING, status_and_code

PACK = load_rule_pack("smoke-2026.1")
SD_WORKLOADS = ("sd-sft-digits", "sd-infer-digits")
PROMPT_IDS = [f"{language}-{digit}" for language in ("en", "zh") for digit in range(10)]
PEAKS = {"fp32": 1.0}
JUDGED = {"good": 5, "same": 12, "bad": 3, "signed_off_by": "staff-a"}


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, format="PNG")
    return stream.getvalue()


def write_images(folder, prompt_ids, seconds=0.5, seed_offset=0, bad_digest_for=None):
    rows = []
    for index, prompt_id in enumerate(prompt_ids):
        data = png_bytes(index + seed_offset)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "images" / f"{prompt_id}.png").write_bytes(data)
        digest = "0" * 64 if prompt_id == bad_digest_for else hashlib.sha256(data).hexdigest()
        rows.append({"prompt_id": prompt_id, "seed": 1000 + index, "file": f"images/{prompt_id}.png", "sha256": digest, "seconds": seconds})
    write_jsonl(folder / "images.jsonl", rows)


def build_sd_run(root, loss_scale=1.0, seconds=0.5, prompt_ids=PROMPT_IDS, seed_offset=0, bad_digest_for=None):
    run_dir = build_run(root, pack=PACK, workloads=())
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    write_json(run_dir / "run.json", {**run, "tracks": ["finetuning", "inference"], "level": 2})
    for workload_id in SD_WORKLOADS:
        folder = run_dir / "workloads" / workload_id
        spec = PACK.workload(workload_id)
        write_json(folder / "config.json", {**workload_config(PACK, workload_id), "cards": 1})
        write_json(folder / "result.json", {"workload": workload_id, "kind": spec["kind"], "status": "completed", "summary": {}})
        write_images(folder, prompt_ids, seconds, seed_offset, bad_digest_for)
    steps = [{"step": step, "loss": loss, "step_seconds": 0.1, "images": 8, "images_per_second_per_card": 80.0, "cards": 1}
             for step, loss in enumerate(loss_curve(20, loss_scale), start=1)]
    write_jsonl(run_dir / "workloads" / "sd-sft-digits" / "steps.jsonl", steps)
    return run_dir


def bundle_of(folder, **options):
    run_dir = build_sd_run(folder / "run", **options)
    return open_bundle(write_bundle(run_dir, folder / "run.tar", KEY).path, KEYRING)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return bundle_of(tmp_path_factory.mktemp("reference"))


def judged(folder, reference, human=None, peaks=PEAKS, **options):
    return judge(bundle_of(folder, **options), [Reference(reference, PEAKS)], PACK, peaks, human)


@pytest.mark.parametrize(
    ("options", "criterion_id", "status", "code"),
    [
        ({"loss_scale": 1.015}, "sd-sft.loss_alignment", "pass", "loss_alignment_pass"),
        ({"loss_scale": 1.03}, "sd-sft.loss_alignment", "fail", "loss_alignment_fail"),
        ({}, "sd-sft.human", "pending", "human_pending"),
        ({}, "sd-infer.human", "pending", "human_pending"),
        ({"seconds": 1.2}, "sd-infer.throughput", "pass", "images_throughput_pass"),
        ({"seconds": 1.3}, "sd-infer.throughput", "fail", "images_throughput_fail"),
        ({"prompt_ids": PROMPT_IDS[:-1]}, "sd-infer.human", "fail", "records_invalid"),
        ({"bad_digest_for": "zh-3"}, "sd-sft.human", "fail", "records_invalid"),
    ],
)
def test_sd_criterion_outcomes(tmp_path, reference, options, criterion_id, status, code):
    verdict = judged(tmp_path, reference, **options)

    assert status_and_code(verdict, criterion_id) == (status, code)


def test_image_gsb_judged_by_people(tmp_path, reference):
    # The smoke pack disables human evaluation of text; SD images are judged all the same.
    assert PACK.data["settings"]["human_evaluation"]["enabled"] is False

    verdict = judged(tmp_path, reference, human={"sd-infer.human": JUDGED, "sd-sft.human": {**JUDGED, "bad": 9}})

    assert status_and_code(verdict, "sd-infer.human") == ("pass", "human_pass")
    assert status_and_code(verdict, "sd-sft.human") == ("fail", "human_fail")
    assert verdict.criterion("sd-infer.human").details["pairs"] == 20


def test_throughput_needs_peak(tmp_path, reference):
    verdict = judged(tmp_path, reference, peaks={"bf16": 312.0})

    assert status_and_code(verdict, "sd-infer.throughput") == ("refused", "peak_missing")


def test_sd_workloads_pass_when_judged(tmp_path, reference):
    human = {"sd-infer.human": JUDGED, "sd-sft.human": JUDGED}

    verdict = judged(tmp_path, reference, human=human)

    statuses = {result.id: result.status for result in verdict.criteria if result.workload in SD_WORKLOADS}
    assert set(statuses.values()) == {"pass"}
    assert "sd-infer.throughput" in statuses
    assert verdict.tracks["inference"]["max_level"] >= 2
    assert verdict.tracks["inference"]["level"] == 0  # the LLaMA inference of level I is missing


def test_image_pairs_by_prompt_id(tmp_path, reference):
    vendor = bundle_of(tmp_path, seed_offset=3)

    pairs = image_pairs(vendor, reference, "sd-infer-digits")

    assert [pair.prompt_id for pair in pairs] == sorted(PROMPT_IDS)
    assert all(vendor.has(pair.vendor_path) and reference.has(pair.reference_path) for pair in pairs)
    assert pairs[0].vendor_path == f"workloads/sd-infer-digits/images/{pairs[0].prompt_id}.png"
    assert not any(pair.identical for pair in pairs)


def test_identical_images_flagged(tmp_path, reference):
    pairs = image_pairs(bundle_of(tmp_path), reference, "sd-sft-digits")

    assert len(pairs) == 20
    assert all(pair.identical for pair in pairs)


def test_image_pairs_missing_prompt(tmp_path, reference):
    vendor = bundle_of(tmp_path, prompt_ids=PROMPT_IDS[2:])

    with pytest.raises(RecordsInvalid, match="en-0"):
        image_pairs(vendor, reference, "sd-infer-digits")


def test_image_seconds_not_number_in_chinese(tmp_path, reference):
    result = judged(tmp_path, reference, seconds="fast").criterion("sd-infer.throughput")

    assert result.details["code"] == "records_invalid"
    assert result.explanation["zh"] == ("工作负载 sd-infer-digits 的记录无效：workloads/sd-infer-digits/images.jsonl 中提示词 'en-0' 的图像的 "
                                        "seconds 是 'fast'，不是数字。")


def test_image_seconds_sum_beyond_float_range(tmp_path, reference):
    result = judged(tmp_path, reference, seconds=1e308).criterion("sd-infer.throughput")

    assert result.status == "fail"
    assert result.details["code"] == "records_invalid"
    assert "has no images with positive, finite seconds" in result.explanation["en"]
