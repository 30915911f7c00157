"""Stable Diffusion pieces that need no training: the digit data, noise seeds, prompts, profiles and planning."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from agent.errors import AgentError
from agent.runner.plan import plan_workloads
from agent.runner.profiles import load_profile
from agent.workloads.sd_models import caption, read_digits, read_prompts, sample_noise, upscale_digit
from certification.rulepack import load_rule_pack

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "sd"


def load_generator():
    spec = importlib.util.spec_from_file_location("make_digits", DATA / "make_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digit_files_match_scikit_learn():
    pytest.importorskip("sklearn")
    generator = load_generator()

    assert (DATA / "digits_captions.jsonl").read_text(encoding="utf-8") == "\n".join(generator.image_lines()) + "\n"
    assert (DATA / "digit_prompts.jsonl").read_text(encoding="utf-8") == "\n".join(generator.prompt_lines()) + "\n"


def test_digit_captions_follow_labels():
    rows = read_digits(DATA / "digits_captions.jsonl")

    assert len(rows) == 1797
    assert rows[0]["label"] == 0
    assert rows[0]["caption_zh"] == "黑底白字的手写数字零"
    assert all(str(row["label"]) in row["caption_en"] for row in rows)
    assert caption(rows[5], 0) == rows[5]["caption_en"]
    assert caption(rows[5], 1) == rows[5]["caption_zh"]


def test_upscale_repeats_pixels():
    pixels = [[16 if (row + column) % 2 else 0 for column in range(8)] for row in range(8)]

    image = upscale_digit(pixels, 32)

    assert image.shape == (3, 32, 32)
    assert image.dtype == np.float32
    assert image[0, 0, 0] == -1.0
    assert image[0, 0, 4] == 1.0
    assert np.array_equal(image[:, :4, :4], np.full((3, 4, 4), -1.0, dtype=np.float32))
    assert np.array_equal(image[0], image[2])


def test_upscale_rejects_odd_resolution():
    with pytest.raises(ValueError, match="30"):
        upscale_digit([[0] * 8] * 8, 30)


def test_noise_fixed_by_seed_and_position():
    first = sample_noise(42, 7, (4, 8, 8), 1000)
    again = sample_noise(42, 7, (4, 8, 8), 1000)
    other = sample_noise(42, 8, (4, 8, 8), 1000)

    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert not np.array_equal(first["noise"], other["noise"])
    assert 0 <= int(first["timesteps"]) < 1000


def test_prompts_need_unique_ids(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "x", "seed": 1}) + "\n" + json.dumps({"id": "a", "prompt": "y", "seed": 2}) + "\n", encoding="utf-8")

    with pytest.raises(ValueError, match="unique"):
        read_prompts(path)
    assert [prompt["id"] for prompt in read_prompts(DATA / "digit_prompts.jsonl")][:2] == ["en-0", "en-1"]


@pytest.mark.parametrize("name", ["smoke-sd", "demo-sd"])
def test_sd_profiles_plan_only_sd(name):
    profile = load_profile(name)
    pack = load_rule_pack(profile.rule_pack)

    planned = plan_workloads(pack, profile.tracks, profile.level, profile.workloads)

    assert planned == ["sd-sft-digits", "sd-infer-digits"]


def test_plan_rejects_unplanned_workload():
    pack = load_rule_pack("smoke-2026.1")

    with pytest.raises(AgentError) as error:
        plan_workloads(pack, ["inference"], 2, ["sd-infer-digits", "lora-llama"])

    assert error.value.code == "workload_not_planned"
    assert "lora-llama" in str(error.value)


def test_inference_only_pulls_in_sd_sft():
    pack = load_rule_pack("smoke-2026.1")

    planned = plan_workloads(pack, ["inference"], 2)

    assert "sd-sft-digits" in planned
    assert planned.index("sd-sft-digits") < planned.index("sd-infer-digits")
