"""A local ppdiffusers Stable Diffusion checkpoint: the folder that `StableDiffusionPipeline.save_pretrained` writes.

A pack's SD model entry may name one instead of building every part from
`config`:

    sd-1.4:
      architecture: StableDiffusionPipeline
      tokenizer: clip
      checkpoint: {path: standard/models/stable-diffusion-v1-4, sha256: null}
      config: {}

`path` is relative to the data root (`python -m agent run --data-root`).
`sha256` is the digest of the folder's manifest, computed as for the language
models' checkpoints (agent.runner.checkpoints). Null means that staff have
not pinned the folder yet, which only a draft pack may do. The folder has the
subfolders `unet`, `vae`, `text_encoder` (each a `config.json` and Paddle
weights), `tokenizer` (CLIP's `vocab.json` and `merges.txt`) and `scheduler`
(`scheduler_config.json`), with `model_index.json` at the root. Nothing is
downloaded: every part loads from these files. Values in the pack's `config`
(per part, such as `unet: {sample_size: 64}`) must agree with the checkpoint's
own config. The runner checks the layout, the digest and those values before
the run starts (agent.runner.checkpoints.verify_checkpoint), and a
vendor may point it at another folder with `--checkpoint MODEL=DIR`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """Load the UNet, VAE and text encoder of the checkpoint in float32, from local files only."""
    from ppdiffusers import AutoencoderKL, UNet2DConditionModel
    from ppdiffusers.transformers import CLIPTextModel

    return {
        "unet": UNet2DConditionModel.from_pretrained(str(folder / "unet")),
        "vae": AutoencoderKL.from_pretrained(str(folder / "vae")),
        "text_encoder": CLIPTextModel.from_pretrained(str(folder / "text_encoder")),
    }


def training_schedule(scheduler_config: dict[str, Any]) -> dict[str, Any]:
    """Return the DDPM training schedule of a checkpoint's scheduler config, which has the betas that training uses.

    A checkpoint's scheduler/ may contain another scheduler's config, such as PNDMScheduler's. DDPMScheduler takes
    its betas and step count and fills in its own defaults.
    """
    from ppdiffusers import DDPMScheduler

    return dict(DDPMScheduler.from_config(scheduler_config).config)
