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
from typing import Any

import numpy as np
import paddle

from certification.records import write_json

from agent.workloads import sd_images
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
    """The training stream: max_steps x global_batch_size samples, image i % n, with seeded noise per position."""

    def __init__(self, rows: list[dict], encoder: PromptEncoder, fixed: dict[str, Any], shape: tuple[int, int, int], timesteps: int):
        self.rows, self.encoder, self.shape, self.timesteps = rows, encoder, shape, timesteps
        self.resolution, self.seed = int(fixed["resolution"]), int(fixed["seed"])
        self.length = int(fixed["max_steps"]) * int(fixed["global_batch_size"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, position: int) -> dict[str, np.ndarray]:
        row = self.rows[position % len(self.rows)]
        sample = {
            "pixel_values": upscale_digit(row["pixels"], self.resolution),
            "input_ids": np.asarray(self.encoder.ids(caption(row, position)), dtype="int64"),
        }
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


def resolve_config(context: WorkloadContext, kind: str) -> dict[str, Any]:
    datasets = context.spec["datasets"]
    config = {
        "workload": context.workload_id,
        "kind": kind,
        "init_from": context.spec.get("init_from"),
        "model": {"name": context.model_name, "architecture": context.model_preset["architecture"], "config": check_preset(context)},
        "hyperparameters": {"fixed": dict(context.fixed), "free": dict(context.free)},
        "datasets": {role: [context.dataset_record(name) for name in ([names] if isinstance(names, str) else names)]
                     for role, names in datasets.items()},
        "tokenizer": context.tokenizer_record(),
        "device": context.device,
        "cards": context.cards,
        "data_recipe": {"prompts": sd_images.RECIPE},
    }
    if kind == "sd_sft":
        config["data_recipe"]["train"] = (
            "digit images in file order, image (position mod count) at stream position; 8x8 pixels 0-16 scaled to "
            "[-1, 1] and repeated into resolution/8-pixel squares, grey copied to 3 channels; caption English at even "
            "positions, Chinese at odd; noise, VAE posterior noise and timestep from numpy default_rng([seed, position])"
        )
        config["step_record"] = {
            "loss": "mean squared error of the predicted noise over the step's global batch, unsmoothed",
            "images": "images in the step's global batch on this card",
            "images_per_second_per_card": "images / step_seconds / cards",
        }
    return config


def _encoder(context: WorkloadContext) -> PromptEncoder:
    record = context.tokenizer_record()
    return PromptEncoder(context.data_root / record["path"], record["kind"], int(context.fixed["max_seq_length"]), record.get("class"))


def _generate(context: WorkloadContext, parts: dict[str, Any], encoder: PromptEncoder) -> dict[str, Any]:
    fixed = context.fixed
    schedule = check_preset(context)["noise_scheduler"]
    pipeline = sd_images.build_pipeline(parts, schedule, fixed["inference_scheduler"])
    prompts = read_prompts(context.dataset_path(context.spec["datasets"]["prompts"]))
    summary = sd_images.generate_prompt_set(pipeline, encoder, prompts, fixed, context.out_dir, context.device)
    summary["images_per_second_per_card"] = summary["images_per_second"] / context.cards
    return summary


def run_sft(context: WorkloadContext) -> dict[str, Any]:
    from ppdiffusers import DDPMScheduler

    fixed = context.fixed
    config = resolve_config(context, "sd_sft")
    config["determinism"] = apply_determinism(int(fixed["seed"]), context.device)
    logger.info("%s: resolved config: %s", context.workload_id, config["hyperparameters"])
    encoder = _encoder(context)

    # Data: the captioned images in a fixed order; each stream position draws its noise from its own seed.
    model_config = config["model"]["config"]
    noise_scheduler = DDPMScheduler(**model_config["noise_scheduler"])
    rows = [row for name in context.spec["datasets"]["train"] for row in read_digits(context.dataset_path(name))]
    dataset = CaptionedImages(rows, encoder, fixed, latent_shape(model_config, int(fixed["resolution"])), noise_scheduler.config.num_train_timesteps)

    # Training: the UNet only.
    parts = build_parts(model_config)
    config["trainer"] = train_unet(context, NoisePredictionLoss(parts, noise_scheduler), dataset, collate_images)
    write_json(context.out_dir / "config.json", config)
    save_parts(parts, context.model_dir)

    # Images of the prompt set from the fine-tuned model, for human evaluation.
    summary = _generate(context, parts, encoder)
    return {"images": summary["images"], "images_per_second_per_card": summary["images_per_second_per_card"]}


def run_infer(context: WorkloadContext) -> dict[str, Any]:
    fixed = context.fixed
    config = resolve_config(context, "sd_infer")
    config["determinism"] = apply_determinism(int(fixed["seed"]), context.device)
    logger.info("%s: resolved config: %s", context.workload_id, config["hyperparameters"])
    if context.init_from is None:
        raise ValueError(f"workload {context.workload_id!r} has no init_from: name the SD fine-tuning workload whose model it generates with")

    parts = load_parts(context.init_from)
    write_json(context.out_dir / "config.json", config)
    return _generate(context, parts, _encoder(context))
