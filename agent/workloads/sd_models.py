"""Stable Diffusion parts for the SD workloads: models from the pack's config, prompts, images and seeded noise.

The pack's model entry (architecture `StableDiffusionPipeline`) contains one config per
part: `unet` (ppdiffusers UNet2DConditionModel), `vae` (AutoencoderKL),
`text_encoder` (CLIPTextConfig of ppdiffusers' CLIPTextModel) and
`noise_scheduler` (DDPMScheduler for training). Every random draw that shapes
the loss or an image comes from numpy with a seed named in the records, so
that two devices whose own random generators differ still see the same noise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agent.workloads.common import WorkloadContext, encode, load_tokenizer

ARCHITECTURE = "StableDiffusionPipeline"
PARTS = ("unet", "vae", "text_encoder")


def check_preset(context: WorkloadContext) -> dict[str, Any]:
    """Return the pack's SD config, raising ValueError when the preset is not a Stable Diffusion one.

    A preset with a `checkpoint` loads its parts from that folder
    (agent.workloads.sd_checkpoint), and its `config` only contains values the
    checkpoint must agree with; any other preset builds every part from `config`.
    """
    preset = context.model_preset
    if preset["architecture"] != ARCHITECTURE:
        raise ValueError(f"model architecture {preset['architecture']!r} is not supported by the SD workloads: use {ARCHITECTURE}")
    if "checkpoint" in preset:
        return preset["config"]
    missing = [part for part in (*PARTS, "noise_scheduler") if part not in preset["config"]]
    if missing:
        raise ValueError(
            f"model {context.model_name!r} has no config for {', '.join(missing)}: the SD workloads build every part "
            "from the pack's config, so add them, or name a ppdiffusers checkpoint folder in the model's `checkpoint`"
        )
    return preset["config"]


def build_parts(config: dict[str, Any]) -> dict[str, Any]:
    """Build the UNet, VAE and text encoder from their configs, with freshly initialised weights."""
    from ppdiffusers import AutoencoderKL, UNet2DConditionModel
    from ppdiffusers.transformers import CLIPTextConfig, CLIPTextModel

    return {
        "unet": UNet2DConditionModel(**config["unet"]),
        "vae": AutoencoderKL(**config["vae"]),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**config["text_encoder"])),
    }


def load_parts(model_dir: Path) -> dict[str, Any]:
    """Load the parts that an SD fine-tuning workload saved under `model_dir`, from local files only."""
    from ppdiffusers import AutoencoderKL, UNet2DConditionModel
    from ppdiffusers.transformers import CLIPTextModel

    if not (model_dir / "unet").is_dir():
        raise FileNotFoundError(f"no fine-tuned SD model at {model_dir}: run the workload that init_from names first")
    return {
        "unet": UNet2DConditionModel.from_pretrained(str(model_dir / "unet")),
        "vae": AutoencoderKL.from_pretrained(str(model_dir / "vae")),
        "text_encoder": CLIPTextModel.from_pretrained(str(model_dir / "text_encoder")),
    }


def save_parts(parts: dict[str, Any], model_dir: Path) -> None:
    for name in PARTS:
        parts[name].save_pretrained(str(model_dir / name))


def latent_shape(config: dict[str, Any], resolution: int) -> tuple[int, int, int]:
    """Return (channels, height, width) of the latents: the VAE halves the size once per block after the first."""
    factor = 2 ** (len(config["vae"]["block_out_channels"]) - 1)
    if resolution % factor:
        raise ValueError(f"resolution {resolution} is not a multiple of the VAE's downsampling factor {factor}")
    return (config["unet"]["in_channels"], resolution // factor, resolution // factor)


class PromptEncoder:
    """Token ids for the text encoder: BOS, the text's ids, EOS, cut or padded to `length` with the pad id."""

    def __init__(self, tokenizer_path: Path, kind: str, length: int, tokenizer_class: str | None = None):
        self.tokenizer = load_tokenizer(tokenizer_path, kind, tokenizer_class)
        self.length = length

    def ids(self, text: str) -> list[int]:
        pieces = [self.tokenizer.bos_token_id, *encode(self.tokenizer, text)][: self.length - 1]
        pieces.append(self.tokenizer.eos_token_id)
        return pieces + [self.tokenizer.pad_token_id] * (self.length - len(pieces))


def read_digits(path: Path) -> list[dict[str, Any]]:
    """Read the digit images: one JSON line each with 8x8 `pixels` (0-16), `label`, `caption_en` and `caption_zh`."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{path} contains no images: restore the data file that the rule pack names")
    return rows


def upscale_digit(pixels: list[list[int]], resolution: int) -> np.ndarray:
    """Return a (3, resolution, resolution) float32 image in [-1, 1]: 0-16 scaled, each pixel repeated as a square block."""
    grid = np.asarray(pixels, dtype="float32") / 16.0
    factor = resolution // grid.shape[0]
    if factor * grid.shape[0] != resolution:
        raise ValueError(f"resolution {resolution} is not a whole multiple of the {grid.shape[0]}-pixel digits")
    image = np.kron(grid, np.ones((factor, factor), dtype="float32")) * 2.0 - 1.0
    return np.repeat(image[None], 3, axis=0)


def caption(row: dict[str, Any], position: int) -> str:
    """Alternate the caption language by stream position, so that both languages appear in every batch."""
    return row["caption_en"] if position % 2 == 0 else row["caption_zh"]


def read_prompts(path: Path) -> list[dict[str, Any]]:
    """Read the prompt set: one JSON line per prompt with a unique `id`, `prompt` and integer `seed`."""
    prompts = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [prompt.get("id") for prompt in prompts]
    if len(set(ids)) != len(ids) or not all(isinstance(prompt.get("seed"), int) for prompt in prompts):
        raise ValueError(f"{path}: every prompt needs a unique 'id' and an integer 'seed'")
    return prompts


def sample_noise(seed: int, position: int, shape: tuple[int, int, int], timesteps: int) -> dict[str, np.ndarray]:
    """Draw the training noise of one sample from numpy, seeded by (seed, stream position).

    Returns the timestep, the noise added to the latents and the noise that
    samples the latents from the VAE's posterior.
    """
    generator = np.random.default_rng([seed, position])
    return {
        "timesteps": np.asarray(generator.integers(0, timesteps), dtype="int64"),
        "noise": generator.standard_normal(shape, dtype=np.float32),
        "latent_noise": generator.standard_normal(shape, dtype=np.float32),
    }
