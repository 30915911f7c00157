"""The SD workloads from a local ppdiffusers checkpoint folder and an image folder with metadata.jsonl captions.

A tiny pipeline is saved with `save_pretrained`. It has the smoke pack's part
configs and a CLIP tokenizer whose vocabulary is CLIP's 512 byte symbols and
its two special tokens. A folder of digit images is written from the shipped
digits data. The workloads then fine-tune from and generate with that folder.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from agent.errors import AgentError
from agent.runner.checkpoints import bpe_files, check_checkpoint_folders, folder_files, manifest, manifest_sha256
from agent.runner.plan import verify_input_files
from agent.workloads import sd, sd_folder
from agent.workloads.common import WorkloadContext
from agent.workloads.sd_models import read_digits
from certification.records import read_jsonl
from certification.rulepack import parse_rule_pack

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "certification" / "rulepacks" / "smoke-2026.1.yaml"
DIGITS = REPO / "data" / "sd" / "digits_captions.jsonl"
IMAGES = 8


def write_clip_tokenizer(folder: Path) -> int:
    """Write a CLIP vocab.json (byte symbols, the same with </w>, start and end of text) and a merges.txt without merges."""
    from paddlenlp.transformers.clip.tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocabulary = symbols + [symbol + "</w>" for symbol in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(vocabulary)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocabulary)


def save_tiny_pipeline(folder: Path, work: Path):
    """Build the tiny pipeline with fresh weights, save it with save_pretrained and return it."""
    import paddle
    from ppdiffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from ppdiffusers.transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    config = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))["models"]["sd-tiny"]["config"]
    vocabulary = write_clip_tokenizer(work / "clip")
    paddle.seed(7)  # The workload's seed 42 would give other weights.
    schedule = {key: value for key, value in config["noise_scheduler"].items() if key != "clip_sample"}
    pipeline = StableDiffusionPipeline(
        vae=AutoencoderKL(**config["vae"]),
        text_encoder=CLIPTextModel(CLIPTextConfig(**{**config["text_encoder"], "vocab_size": vocabulary})),
        tokenizer=CLIPTokenizer(str(work / "clip" / "vocab.json"), str(work / "clip" / "merges.txt")),
        unet=UNet2DConditionModel(**config["unet"]), scheduler=PNDMScheduler(**schedule),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(str(folder))
    return pipeline


def write_image_folder(folder: Path, count: int = IMAGES) -> None:
    """Write digit images of 40x48 pixels (not square, so resize and centre crop both act) and their metadata.jsonl."""
    from PIL import Image

    folder.mkdir(parents=True)
    lines = []
    for index, row in enumerate(read_digits(DIGITS)[:count]):
        grey = (np.asarray(row["pixels"], dtype="float32") * 255 / 16).astype("uint8")
        Image.fromarray(grey).resize((40, 48), Image.NEAREST).convert("RGB").save(folder / f"{index:04d}.png")
        lines.append(json.dumps({"file_name": f"{index:04d}.png", "text": row["caption_en"]}))
    (folder / sd_folder.METADATA).write_text("\n".join(lines) + "\n", encoding="utf-8")


def folder_digest(folder: Path) -> str:
    return manifest_sha256(manifest(folder_files(folder)))


def make_pack(data: Path, **changes) -> "RulePack":
    """The smoke pack with its SD workloads on the checkpoint at data/models/sd-test and the image folder at data/images."""
    pack = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    pack["status"] = "draft"
    pack["tokenizers"]["clip-test"] = {"kind": "bpe", "class": "CLIPTokenizer", "path": "models/sd-test/tokenizer/vocab.json", "sha256": None}
    pack["models"]["sd-test"] = {"architecture": "StableDiffusionPipeline", "tokenizer": "clip-test",
                                 "checkpoint": {"path": "models/sd-test", "sha256": folder_digest(data / "models" / "sd-test")},
                                 "config": {"unet": {"sample_size": 8}}}
    pack["datasets"]["sd_folder"] = {"path": "images", "sha256": None}
    pack["datasets"]["sd_few_prompts"] = {"path": "prompts.jsonl", "sha256": None}
    sft = pack["workloads"]["sd-sft-digits"]
    sft.update(model="sd-test", datasets={"train": ["sd_folder"], "prompts": "sd_few_prompts"})
    sft["hyperparameters"]["fixed"].update(max_steps=3, global_batch_size=4, center_crop=True, random_flip=False)
    sft["hyperparameters"]["free"]["per_device_train_batch_size"] = 4
    infer = pack["workloads"]["sd-infer-digits"]
    infer.update(model="sd-test", datasets={"prompts": "sd_few_prompts"})
    del infer["init_from"]
    for key, value in changes.items():
        target = pack
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    return parse_rule_pack(yaml.safe_dump(pack, allow_unicode=True).encode("utf-8"))


def context(pack, data: Path, run: Path, workload_id: str) -> WorkloadContext:
    """The context the runner would give the workload, with its output folder made as the runner makes it."""
    workload = WorkloadContext(workload_id=workload_id, spec=pack.workload(workload_id), pack=pack, data_root=data, run_dir=run, device="cpu")
    workload.out_dir.mkdir(parents=True, exist_ok=True)
    return workload


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd-data")
    pipeline = save_tiny_pipeline(root / "models" / "sd-test", root)
    write_image_folder(root / "images")
    prompts = [line for line in (REPO / "data" / "sd" / "digit_prompts.jsonl").read_text(encoding="utf-8").splitlines()[:3]]
    (root / "prompts.jsonl").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return {"root": root, "pipeline": pipeline}


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("sd-run")
    pack = make_pack(data["root"])
    sd.run_sft(context(pack, data["root"], run, "sd-sft-digits"))
    sd.run_infer(context(pack, data["root"], run, "sd-infer-digits"))
    return {"run": run, "pack": pack}


def first_batch_loss(parts: dict, scheduler_config, pack, data: Path) -> float:
    """The loss of `parts` on the first batch of the training stream, with its fixed noise."""
    import paddle
    from ppdiffusers import DDPMScheduler

    workload = context(pack, data, data / "unused", "sd-sft-digits")
    model = sd.resolve_model(workload)
    dataset = sd.CaptionedImages(sd.read_training_rows(workload), sd._encoder(workload, model), workload.fixed,
                                 (4, 8, 8), 1000)
    objective = sd.NoisePredictionLoss(parts, DDPMScheduler.from_config(scheduler_config))
    batch = sd.collate_images([dataset[position] for position in range(4)])
    with paddle.no_grad():
        return float(objective(**batch)[0].item())


@pytest.mark.slow
def test_sft_starts_from_the_checkpoint_weights(data, runs):
    steps = read_jsonl(runs["run"] / "workloads" / "sd-sft-digits" / "steps.jsonl")
    config = json.loads((runs["run"] / "workloads" / "sd-sft-digits" / "config.json").read_text(encoding="utf-8"))

    assert [row["step"] for row in steps] == [1, 2, 3]
    pipeline = data["pipeline"]
    saved = {"unet": pipeline.unet, "vae": pipeline.vae, "text_encoder": pipeline.text_encoder}
    assert steps[0]["loss"] == pytest.approx(first_batch_loss(saved, pipeline.scheduler.config, runs["pack"], data["root"]), rel=1e-6)
    assert config["model"]["checkpoint"]["sha256"] == folder_digest(data["root"] / "models" / "sd-test")
    assert config["model"]["config"]["noise_scheduler"]["_class_name"] == "PNDMScheduler"
    assert "metadata.jsonl order" in config["data_recipe"]["train"]


@pytest.mark.slow
def test_fresh_weights_change_first_loss(data, runs):
    """The comparison above can fail: the tiny configs with the workload's own seed give another first loss."""
    import paddle

    from agent.workloads.sd_models import build_parts

    steps = read_jsonl(runs["run"] / "workloads" / "sd-sft-digits" / "steps.jsonl")
    config = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))["models"]["sd-tiny"]["config"]
    config["text_encoder"]["vocab_size"] = data["pipeline"].text_encoder.config.vocab_size
    paddle.seed(42)
    fresh = build_parts(config)

    assert first_batch_loss(fresh, config["noise_scheduler"], runs["pack"], data["root"]) != pytest.approx(steps[0]["loss"], rel=1e-3)


@pytest.mark.slow
def test_inference_generates_with_the_checkpoint(data, runs, tmp_path):
    from agent.workloads import sd_images
    from agent.workloads.sd_models import read_prompts

    records = read_jsonl(runs["run"] / "workloads" / "sd-infer-digits" / "images.jsonl")
    workload = context(runs["pack"], data["root"], tmp_path, "sd-infer-digits")
    model = sd.resolve_model(workload)
    parts = {"unet": data["pipeline"].unet, "vae": data["pipeline"].vae, "text_encoder": data["pipeline"].text_encoder}
    pipeline = sd_images.build_pipeline(parts, model["config"]["noise_scheduler"], workload.fixed["inference_scheduler"])
    sd_images.generate_prompt_set(pipeline, sd._encoder(workload, model), read_prompts(data["root"] / "prompts.jsonl"),
                                  workload.fixed, tmp_path, "cpu")
    expected = read_jsonl(tmp_path / "images.jsonl")

    assert [record["prompt_id"] for record in records] == ["en-0", "en-1", "en-2"]
    assert [record["sha256"] for record in records] == [record["sha256"] for record in expected]


def test_centre_crop_after_resize(tmp_path):
    from PIL import Image

    pixels = np.zeros((32, 48, 3), dtype="uint8")
    pixels[:, 8:40] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    tall = np.zeros((64, 32, 3), dtype="uint8")
    tall[8:56] = 255  # halved to rows 4-27 of 32; the centred 16 rows are 8-23
    Image.fromarray(tall).save(tmp_path / "tall.png")

    assert np.array_equal(sd_folder.load_image(tmp_path / "wide.png", 32), np.ones((3, 32, 32), dtype="float32"))
    small = sd_folder.load_image(tmp_path / "tall.png", 16)
    assert small.shape == (3, 16, 16)
    assert small.min() == 1.0


def copy_data(data: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    return copy


def test_runner_checks_image_folder_digest(data):
    digest = folder_digest(data["root"] / "images")
    pinned = make_pack(data["root"], **{"datasets.sd_folder.sha256": digest})
    changed = make_pack(data["root"], **{"datasets.sd_folder.sha256": "0" * 64})

    records = verify_input_files(pinned, ["sd-sft-digits"], data["root"])
    assert records["dataset sd_folder"]["sha256"] == digest
    assert records["dataset sd_folder"]["pinned"] is True
    with pytest.raises(AgentError) as error:
        verify_input_files(changed, ["sd-sft-digits"], data["root"])
    assert error.value.code == "data_checksum_mismatch"


def test_missing_subfolder_is_named(data, tmp_path):
    root = copy_data(data["root"], tmp_path)
    shutil.rmtree(root / "models" / "sd-test" / "vae")

    with pytest.raises(AgentError) as error:
        sd.resolve_model(context(make_pack(root), root, tmp_path / "run", "sd-sft-digits"))
    assert error.value.code == "checkpoint_incomplete"
    assert "no vae/ subfolder" in error.value.message


def test_missing_weights_file_is_named(data, tmp_path):
    root = copy_data(data["root"], tmp_path)
    (root / "models" / "sd-test" / "unet" / "diffusion_paddle_model.safetensors").unlink()

    with pytest.raises(AgentError) as error:
        sd.resolve_model(context(make_pack(root), root, tmp_path / "run", "sd-sft-digits"))
    assert error.value.code == "checkpoint_incomplete"
    assert f"{root / 'models' / 'sd-test' / 'unet'} has no weights" in error.value.message
    assert "diffusion_paddle_model.safetensors" in error.value.message


def test_changed_checkpoint_fails_its_digest(data, tmp_path):
    root = copy_data(data["root"], tmp_path)
    pack = make_pack(root)
    (root / "models" / "sd-test" / "scheduler" / "scheduler_config.json").write_text("{}", encoding="utf-8")

    with pytest.raises(AgentError) as error:
        sd.resolve_model(context(pack, root, tmp_path / "run", "sd-sft-digits"))
    assert error.value.code == "data_checksum_mismatch"


def test_pack_value_against_checkpoint_config(data, tmp_path):
    pack = make_pack(data["root"], **{"models.sd-test.config": {"unet": {"sample_size": 64}}})

    with pytest.raises(AgentError) as error:
        sd.resolve_model(context(pack, data["root"], tmp_path, "sd-sft-digits"))
    assert error.value.code == "checkpoint_config_mismatch"
    assert "sample_size=8 in unet/config.json" in error.value.message
    assert "unet.sample_size=64" in error.value.message


# The runner's checks: both SD workloads read the checkpoint, so it is verified once and recorded in run.json.


def test_runner_verifies_sd_checkpoint(data):
    pack = make_pack(data["root"])
    digest = folder_digest(data["root"] / "models" / "sd-test")

    records = verify_input_files(pack, ["sd-sft-digits", "sd-infer-digits"], data["root"])

    record = records["checkpoint sd-test"]
    assert record["path"] == str(data["root"] / "models" / "sd-test")
    assert record["sha256"] == digest
    assert record["pinned"] is True
    assert "model_index.json" in [entry["path"] for entry in record["files"]]
    assert record["config"]["model_index"]["_class_name"] == "StableDiffusionPipeline"
    assert record["config"]["unet"]["sample_size"] == 8
    assert [label for label in records if label.startswith("checkpoint")] == ["checkpoint sd-test"]


def test_sd_checkpoint_read_with_init_from(data):
    pack = make_pack(data["root"], **{"workloads.sd-infer-digits.init_from": "sd-sft-digits"})

    assert pack.checkpoint_model("sd-infer-digits") == "sd-test"
    assert "checkpoint sd-test" in verify_input_files(pack, ["sd-infer-digits"], data["root"])


def test_vendor_folder_for_sd_checkpoint(data, tmp_path):
    vendor = tmp_path / "vendor-sd"
    shutil.copytree(data["root"] / "models" / "sd-test", vendor)
    pack = make_pack(data["root"], **{"models.sd-test.checkpoint.path": "absent/sd"})

    check_checkpoint_folders(pack, ["sd-infer-digits"], {"sd-test": vendor})
    records = verify_input_files(pack, ["sd-infer-digits"], data["root"], {"sd-test": vendor})
    assert records["checkpoint sd-test"]["path"] == str(vendor)

    workload = context(pack, data["root"], tmp_path / "run", "sd-infer-digits")
    workload.checkpoints = {"sd-test": records["checkpoint sd-test"]}
    assert sd.resolve_model(workload)["folder"] == vendor
    with pytest.raises(AgentError) as error:
        verify_input_files(pack, ["sd-infer-digits"], data["root"])
    assert error.value.code == "checkpoint_missing"
    assert "absent/sd" in error.value.message


def test_sd_folder_without_model_index(data, tmp_path):
    root = copy_data(data["root"], tmp_path)
    (root / "models" / "sd-test" / "model_index.json").unlink()

    with pytest.raises(AgentError) as error:
        verify_input_files(make_pack(root), ["sd-infer-digits"], root)
    assert error.value.code == "checkpoint_incomplete"
    assert "has no model_index.json" in error.value.message


def test_sd_shard_missing(data, tmp_path):
    root = copy_data(data["root"], tmp_path)
    unet = root / "models" / "sd-test" / "unet"
    (unet / "diffusion_paddle_model.safetensors").rename(unet / "diffusion_paddle_model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "diffusion_paddle_model-00001-of-00002.safetensors", "b": "diffusion_paddle_model-00002-of-00002.safetensors"}}
    (unet / "diffusion_paddle_model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")

    with pytest.raises(AgentError) as error:
        verify_input_files(make_pack(root), ["sd-infer-digits"], root)
    assert error.value.code == "checkpoint_incomplete"
    assert "diffusion_paddle_model-00002-of-00002.safetensors" in error.value.message


def test_wrong_resolution_is_refused(data, tmp_path):
    pack = make_pack(data["root"], **{"workloads.sd-sft-digits.hyperparameters.fixed.resolution": 64})

    with pytest.raises(ValueError, match="resolution 64.*32x32"):
        sd.resolve_model(context(pack, data["root"], tmp_path, "sd-sft-digits"))


def test_random_flip_is_refused(data, tmp_path):
    pack = make_pack(data["root"], **{"workloads.sd-sft-digits.hyperparameters.fixed.random_flip": True})

    with pytest.raises(ValueError, match="random_flip"):
        sd.run_sft(context(pack, data["root"], tmp_path, "sd-sft-digits"))


def test_image_that_does_not_decode(tmp_path):
    write_image_folder(tmp_path / "images", 2)
    (tmp_path / "images" / "0001.png").write_bytes(b"not a png")

    with pytest.raises(ValueError, match="0001.png does not decode"):
        sd_folder.read_image_folder(tmp_path / "images")


def test_caption_missing(tmp_path):
    write_image_folder(tmp_path / "images", 2)
    metadata = tmp_path / "images" / sd_folder.METADATA
    metadata.write_text(json.dumps({"file_name": "0000.png", "text": "a digit"}) + "\n" + json.dumps({"file_name": "0001.png"}) + "\n", encoding="utf-8")

    with pytest.raises(ValueError, match="line 2 .*0001.png.* has no caption"):
        sd_folder.read_image_folder(tmp_path / "images")


def test_image_without_metadata_line(tmp_path):
    write_image_folder(tmp_path / "images", 3)
    metadata = tmp_path / "images" / sd_folder.METADATA
    metadata.write_text("\n".join(metadata.read_text(encoding="utf-8").splitlines()[:2]) + "\n", encoding="utf-8")

    with pytest.raises(ValueError, match="1 image.*no caption line.*0002.png"):
        sd_folder.read_image_folder(tmp_path / "images")


def test_folder_without_metadata(tmp_path):
    write_image_folder(tmp_path / "images", 1)
    (tmp_path / "images" / sd_folder.METADATA).unlink()

    with pytest.raises(FileNotFoundError, match="metadata.jsonl"):
        sd_folder.read_image_folder(tmp_path / "images")


def vendor_tokenizer_pack(data: Path, tokenizer_sha256: str | None):
    """The pack with its SD checkpoint and tokenizer at absent/sd, so only a --checkpoint folder can provide them."""
    return make_pack(data, **{"models.sd-test.checkpoint.path": "absent/sd",
                              "tokenizers.clip-test.path": "absent/sd/tokenizer/vocab.json",
                              "tokenizers.clip-test.sha256": tokenizer_sha256})


def test_vendor_folder_provides_the_tokenizer(data, tmp_path):
    vendor = tmp_path / "vendor-sd"
    shutil.copytree(data["root"] / "models" / "sd-test", vendor)
    pack = vendor_tokenizer_pack(data["root"], manifest_sha256(manifest(bpe_files(vendor / "tokenizer" / "vocab.json"))))

    records = verify_input_files(pack, ["sd-infer-digits"], data["root"], {"sd-test": vendor})
    workload = context(pack, data["root"], tmp_path / "run", "sd-infer-digits")
    workload.checkpoints = {"sd-test": records["checkpoint sd-test"]}

    assert records["tokenizer clip-test"]["path"] == str(vendor / "tokenizer" / "vocab.json")
    assert records["tokenizer clip-test"]["pinned"] is True
    assert workload.tokenizer_path == vendor / "tokenizer" / "vocab.json"


def test_vendor_tokenizer_checked_against_pack(data, tmp_path):
    vendor = tmp_path / "vendor-sd"
    shutil.copytree(data["root"] / "models" / "sd-test", vendor)
    pack = vendor_tokenizer_pack(data["root"], "0" * 64)

    with pytest.raises(AgentError) as error:
        verify_input_files(pack, ["sd-infer-digits"], data["root"], {"sd-test": vendor})
    assert error.value.code == "data_checksum_mismatch"
    assert str(vendor / "tokenizer" / "vocab.json") in error.value.message


@pytest.mark.parametrize(("file", "key"), [("unet/config.json", "sample_size"), ("vae/config.json", "block_out_channels"),
                                           ("text_encoder/config.json", "vocab_size")])
def test_config_key_missing_before_run(data, tmp_path, file, key):
    root = copy_data(data["root"], tmp_path)
    config_path = root / "models" / "sd-test" / file
    config = json.loads(config_path.read_text(encoding="utf-8"))
    del config[key]
    config_path.write_text(json.dumps(config), encoding="utf-8")
    pack = make_pack(root, **{"models.sd-test.checkpoint.sha256": folder_digest(root / "models" / "sd-test")})

    with pytest.raises(AgentError) as error:
        verify_input_files(pack, ["sd-infer-digits"], root)
    assert error.value.code == "checkpoint_incomplete"
    assert file in error.value.message
    assert key in error.value.message


def test_broken_image_rejected_before_run(data, tmp_path):
    root = copy_data(data["root"], tmp_path)
    (root / "images" / "0003.png").write_bytes(b"not a png")

    with pytest.raises(AgentError) as error:
        verify_input_files(make_pack(root), ["sd-sft-digits"], root)
    assert error.value.code == "image_folder_invalid"
    assert "0003.png" in error.value.message
