"""Stable Diffusion workloads: SFT of the UNet (`sd_sft`) and text-to-image inference (`sd_infer`).

SFT follows the recipe of PaddleMIX's text-to-image fine-tuning: the VAE and
the text encoder are frozen, the UNet learns to predict the noise added at a
random timestep (DDPM, epsilon prediction, mean squared error). PaddleNLP's
Trainer runs the loop and `steps.jsonl` gets one record per optimizer step, as
for the language models, so loss alignment reads it the same way. Both
workloads then generate the pack's prompt set for blind human evaluation.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from certification.records import write_json

from agent.i18n import _
from agent.runner.checkpoints import SD_CONFIG_FILES
from agent.workloads import sd_checkpoint, sd_folder, sd_images
from agent.workloads.common import WorkloadContext, apply_determinism
from agent.workloads.sd_models import (
    PromptEncoder,
    build_parts,
    caption,
    check_preset,
    latent_shape,
    load_parts,
    read_digits,
    read_prompts,
    sample_noise,
    save_parts,
    upscale_digit,
)
from agent.workloads.sd_training import train_unet

logger = logging.getLogger(__name__)


class CaptionedImages(paddle.io.Dataset):
    """The training stream: max_steps x global_batch_size samples, image i % n, with seeded noise per position.

    A row is a digit (`pixels`, two captions) or an image file of an image
    folder (`file`, `caption`), resized and centre-cropped when it is read.
    """

    def __init__(self, rows: list[dict], encoder: PromptEncoder, fixed: dict[str, Any], shape: tuple[int, int, int], timesteps: int):
        self.rows, self.encoder, self.shape, self.timesteps = rows, encoder, shape, timesteps
        self.resolution, self.seed = int(fixed["resolution"]), int(fixed["seed"])
        self.length = int(fixed["max_steps"]) * int(fixed["global_batch_size"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, position: int) -> dict[str, np.ndarray]:
        row = self.rows[position % len(self.rows)]
        if "file" in row:
            pixels, text = sd_folder.load_image(row["file"], self.resolution), row["caption"]
        else:
            pixels, text = upscale_digit(row["pixels"], self.resolution), caption(row, position)
        sample = {"pixel_values": pixels, "input_ids": np.asarray(self.encoder.ids(text), dtype="int64")}
        sample.update(sample_noise(self.seed, position, self.shape, self.timesteps))
        return sample


def collate_images(samples: list[dict[str, np.ndarray]]) -> dict[str, paddle.Tensor]:
    return {key: paddle.to_tensor(np.stack([sample[key] for sample in samples])) for key in samples[0]}


class NoisePredictionLoss(paddle.nn.Layer):
    """The training objective as one Layer, so that the Trainer can call it: frozen VAE and text encoder, trained UNet."""

    def __init__(self, parts: dict[str, Any], noise_scheduler):
        super().__init__()
        self.unet, self.vae, self.text_encoder = parts["unet"], parts["vae"], parts["text_encoder"]
        self.noise_scheduler = noise_scheduler
        for frozen in (self.vae, self.text_encoder):
            frozen.eval()
            for parameter in frozen.parameters():
                parameter.stop_gradient = True

    def forward(self, pixel_values, input_ids, timesteps, noise, latent_noise):
        with paddle.no_grad():
            posterior = self.vae.encode(pixel_values).latent_dist
            latents = (posterior.mean + posterior.std * latent_noise) * self.vae.config.scaling_factor
            text = self.text_encoder(input_ids)[0]
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        prediction = self.unet(noisy, timesteps, text).sample
        loss = paddle.nn.functional.mse_loss(prediction.astype("float32"), noise.astype("float32"))
        return (loss,)


def resolve_model(context: WorkloadContext) -> dict[str, Any]:
    """Return the model's part configs, and its checkpoint folder and record when the preset names a checkpoint.

    The runner has checked the checkpoint (subfolders, files, digest, the
    pack's config values), and a context made without the runner checks it here.
    The training noise schedule is the DDPM schedule of its scheduler/
    config. Its resolution must be the UNet's sample size times the VAE's
    downsampling factor, the size the model was trained at.
    """
    pack_config = check_preset(context)
    if context.checkpoint_model is None:
        return {"config": pack_config, "folder": None, "checkpoint": None}
    verified = context.checkpoint()
    folder = Path(verified["path"])
    record = {"path": verified["path"], "sha256": verified["sha256"], "pinned": verified["pinned"], "files": verified["files"],
              "model_index": verified["config"]["model_index"]}
    configs = {section: dict(verified["config"][section]) for section in SD_CONFIG_FILES}
    configs["noise_scheduler"] = sd_checkpoint.training_schedule(configs["noise_scheduler"])
    resolution = int(context.fixed["resolution"])
    native = configs["unet"]["sample_size"] * 2 ** (len(configs["vae"]["block_out_channels"]) - 1)
    if resolution != native:
        raise ValueError(f"workload {context.workload_id!r} has resolution {resolution}, but the checkpoint of model "
                         f"{context.model_name!r} generates {native}x{native} images (UNet sample_size x VAE factor): "
                         "set the pack's resolution to that size or use the checkpoint made for it")
    return {"config": configs, "folder": folder, "checkpoint": record}


def resolve_config(context: WorkloadContext, kind: str, model: dict[str, Any]) -> dict[str, Any]:
    datasets = context.spec["datasets"]
    config = {
        "workload": context.workload_id,
        "kind": kind,
        "init_from": context.spec.get("init_from"),
        "model": {"name": context.model_name, "architecture": context.model_preset["architecture"], "config": model["config"],
                  "checkpoint": model["checkpoint"]},
        "hyperparameters": {"fixed": dict(context.fixed), "free": dict(context.free)},
        "datasets": {role: [context.dataset_record(name) for name in context.dataset_names(role)]
                     for role in datasets},
        "tokenizer": context.tokenizer_record(),
        "device": context.device,
        "cards": context.cards,
        "data_recipe": {"prompts": sd_images.RECIPE},
    }
    if kind == "sd_sft":
        folders = any(context.dataset_path(name).is_dir() for name in context.dataset_names("train"))
        config["data_recipe"]["train"] = (sd_folder.RECIPE if folders else (
            "digit images in file order, image (position mod count) at stream position; 8x8 pixels 0-16 scaled to "
            "[-1, 1] and repeated into resolution/8-pixel squares, grey copied to 3 channels; caption English at even "
            "positions, Chinese at odd")) + "; noise, VAE posterior noise and timestep from numpy default_rng([seed, position])"
        config["step_record"] = {
            "loss": "mean squared error of the predicted noise over the step's global batch, unsmoothed",
            "images": "images in the step's global batch on this card",
            "images_per_second_per_card": "images / step_seconds / cards",
        }
    return config


def _encoder(context: WorkloadContext, model: dict[str, Any]) -> PromptEncoder:
    record = context.tokenizer_record()
    encoder = PromptEncoder(context.tokenizer_path, record["kind"], int(context.fixed["max_seq_length"]), record.get("class"))
    vocabulary = model["config"]["text_encoder"]["vocab_size"]
    if encoder.tokenizer.vocab_size > vocabulary:
        raise ValueError(f"tokenizer {record['name']!r} has {encoder.tokenizer.vocab_size} tokens, but the text encoder of "
                         f"model {context.model_name!r} embeds only {vocabulary}: use the tokenizer made for that model")
    return encoder


def read_training_rows(context: WorkloadContext) -> list[dict[str, Any]]:
    """Read the training sets in pack order: an image folder (a directory) or a digits JSON-lines file."""
    rows = []
    for name in context.dataset_names("train"):
        path = context.dataset_path(name)
        rows.extend(sd_folder.read_image_folder(path) if path.is_dir() else read_digits(path))
    return rows


def check_augmentation(fixed: dict[str, Any]) -> None:
    """Reject random flips and random crops, because loss alignment needs the same pixels on both sides."""
    if fixed.get("random_flip", False):
        raise ValueError("random_flip: true is not supported: loss alignment needs the same pixels on both sides; set it to false")
    if not fixed.get("center_crop", True):
        raise ValueError("center_crop: false (a random crop) is not supported: set center_crop to true")


def _generate(context: WorkloadContext, parts: dict[str, Any], encoder: PromptEncoder, model: dict[str, Any]) -> dict[str, Any]:
    fixed = context.fixed
    pipeline = sd_images.build_pipeline(parts, model["config"]["noise_scheduler"], fixed["inference_scheduler"])
    prompts = read_prompts(context.dataset_path(context.spec["datasets"]["prompts"]))
    summary = sd_images.generate_prompt_set(pipeline, encoder, prompts, fixed, context.out_dir, context.device,
                                            partial(context.send_heartbeat, "image_generation"))
    summary["images_per_second_per_card"] = summary["images_per_second"] / context.cards
    return summary


def run_sft(context: WorkloadContext) -> dict[str, Any]:
    from ppdiffusers import DDPMScheduler

    fixed = context.fixed
    check_augmentation(fixed)
    model = resolve_model(context)
    config = resolve_config(context, "sd_sft", model)
    config["determinism"] = apply_determinism(int(fixed["seed"]), context.device)
    logger.info(_("{workload}: resolved config: {config}").format(workload=context.workload_id, config=config["hyperparameters"]))
    encoder = _encoder(context, model)

    # Data: the captioned images in a fixed order; each stream position draws its noise from its own seed.
    model_config = model["config"]
    noise_scheduler = DDPMScheduler.from_config(model_config["noise_scheduler"])
    dataset = CaptionedImages(read_training_rows(context), encoder, fixed, latent_shape(model_config, int(fixed["resolution"])),
                              noise_scheduler.config.num_train_timesteps)

    # Training: the UNet only, from the checkpoint's weights or from fresh ones.
    parts = sd_checkpoint.load_checkpoint(model["folder"]) if model["folder"] else build_parts(model_config)
    config["trainer"] = train_unet(context, NoisePredictionLoss(parts, noise_scheduler), dataset, collate_images)
    write_json(context.out_dir / "config.json", config)
    save_parts(parts, context.model_dir)

    # Images of the prompt set from the fine-tuned model, for human evaluation.
    summary = _generate(context, parts, encoder, model)
    return {"images": summary["images"], "images_per_second_per_card": summary["images_per_second_per_card"]}


def run_infer(context: WorkloadContext) -> dict[str, Any]:
    fixed = context.fixed
    model = resolve_model(context)
    config = resolve_config(context, "sd_infer", model)
    config["determinism"] = apply_determinism(int(fixed["seed"]), context.device)
    logger.info(_("{workload}: resolved config: {config}").format(workload=context.workload_id, config=config["hyperparameters"]))
    if context.init_from is not None:
        parts = load_parts(context.init_from)
    elif model["folder"] is not None:
        parts = sd_checkpoint.load_checkpoint(model["folder"])
    else:
        raise ValueError(f"workload {context.workload_id!r} has no init_from and model {context.model_name!r} no checkpoint: "
                         "name the SD fine-tuning workload whose model it generates with, or a checkpoint in the model entry")
    write_json(context.out_dir / "config.json", config)
    return _generate(context, parts, _encoder(context, model), model)
