"""Image generation for the SD workloads: the pack's prompt set through ppdiffusers' StableDiffusionPipeline.

Each prompt is generated alone (batch size 1) at the fixed resolution, step
count, scheduler, guidance scale and seed. The starting latents come from
numpy, seeded by the prompt's seed, so the GPU reference and the vendor start
from the same noise. Images are written as PNG files with one `images.jsonl`
record each: {"prompt_id", "language", "prompt", "seed", "file", "sha256",
"width", "height", "seconds"}.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from certification.records import append_jsonl

from agent.i18n import ngettext
from agent.workloads.common import synchronize
from agent.workloads.sd_models import PromptEncoder

logger = logging.getLogger(__name__)

# Inference schedulers the packs may name; each takes the training noise schedule's config (betas, steps offset).
SCHEDULERS = ("DDIMScheduler", "EulerDiscreteScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler")
RECIPE = (
    "one image per prompt (batch size 1) through ppdiffusers' StableDiffusionPipeline with classifier-free "
    "guidance (empty negative prompt); starting latents = numpy default_rng(seed).standard_normal(latent shape) "
    "times the scheduler's init_noise_sigma; one warm-up image of the first prompt is generated and discarded "
    "before timing; seconds per image span the pipeline call with device synchronisation before each clock reading"
)


def build_pipeline(parts: dict[str, Any], scheduler_config: dict[str, Any], name: str):
    """Assemble a StableDiffusionPipeline from local parts, without tokenizer or safety checker."""
    import ppdiffusers
    from ppdiffusers import StableDiffusionPipeline

    if name not in SCHEDULERS:
        raise ValueError(f"inference scheduler {name!r} is not supported: use one of {', '.join(SCHEDULERS)}")
    scheduler = getattr(ppdiffusers, name).from_config(scheduler_config)
    for part in parts.values():
        part.eval()
    pipeline = StableDiffusionPipeline(
        vae=parts["vae"], text_encoder=parts["text_encoder"], tokenizer=None, unet=parts["unet"],
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate_prompt_set(pipeline, encoder: PromptEncoder, prompts: list[dict[str, Any]], settings: dict[str, Any],
                        out_dir: Path, device: str, on_image: Callable[..., None] | None = None) -> dict[str, Any]:
    """Generate every prompt's image into `out_dir`/images and return the count, seconds and images per second.

    `on_image`, when given, is called after each image with the keyword
    arguments `prompt` (prompts done so far) and `prompts` (their total).
    """
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    empty = _embed(pipeline, encoder, "")
    _generate(pipeline, encoder, prompts[0], empty, settings)  # warm-up, not recorded

    total_seconds = 0.0
    for number, prompt in enumerate(prompts, start=1):
        synchronize(device)
        started = time.monotonic()
        image = _generate(pipeline, encoder, prompt, empty, settings)
        synchronize(device)
        seconds = time.monotonic() - started
        total_seconds += seconds
        append_jsonl(out_dir / "images.jsonl", [_write_png(image, prompt, out_dir, seconds)])
        if on_image is not None:
            on_image(prompt=number, prompts=len(prompts))
    logger.info(ngettext("generated {count} image in {seconds:.2f} s", "generated {count} images in {seconds:.2f} s", len(prompts)).format(
        count=len(prompts), seconds=total_seconds))
    return {"images": len(prompts), "generation_seconds": total_seconds, "images_per_second": len(prompts) / total_seconds}


def _embed(pipeline, encoder: PromptEncoder, text: str):
    import paddle

    with paddle.no_grad():
        return pipeline.text_encoder(paddle.to_tensor([encoder.ids(text)], dtype="int64"))[0]


def _generate(pipeline, encoder: PromptEncoder, prompt: dict[str, Any], empty, settings: dict[str, Any]) -> np.ndarray:
    import paddle

    resolution = int(settings["resolution"])
    shape = (1, pipeline.unet.config.in_channels, resolution // pipeline.vae_scale_factor, resolution // pipeline.vae_scale_factor)
    latents = np.random.default_rng(int(prompt["seed"])).standard_normal(shape, dtype=np.float32)
    with paddle.no_grad():
        output = pipeline(
            prompt_embeds=_embed(pipeline, encoder, prompt["prompt"]), negative_prompt_embeds=empty,
            height=resolution, width=resolution, num_inference_steps=int(settings["num_inference_steps"]),
            guidance_scale=float(settings["guidance_scale"]), latents=paddle.to_tensor(latents), output_type="np",
        )
    return output.images[0]


def _write_png(image: np.ndarray, prompt: dict[str, Any], out_dir: Path, seconds: float) -> dict[str, Any]:
    from PIL import Image

    relative = f"images/{prompt['id']}.png"
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype("uint8")
    Image.fromarray(pixels).save(out_dir / relative, format="PNG")
    data = (out_dir / relative).read_bytes()
    return {
        "prompt_id": prompt["id"], "language": prompt.get("language"), "prompt": prompt["prompt"], "seed": prompt["seed"],
        "file": relative, "sha256": hashlib.sha256(data).hexdigest(),
        "width": int(pixels.shape[1]), "height": int(pixels.shape[0]), "seconds": seconds,
    }
