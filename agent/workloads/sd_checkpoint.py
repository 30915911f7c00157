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
(`scheduler_config.json`). Nothing is downloaded: every part loads from these
files. Values in the pack's `config` (per part, such as `unet: {sample_size:
64}`) must agree with the checkpoint's own config, or loading stops.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from agent.workloads.common import WorkloadContext

logger = logging.getLogger(__name__)

# Subfolder -> the files it must contain. A tuple lists alternatives, one of which must exist.
REQUIRED_FILES = {
    "unet": ("config.json", ("diffusion_paddle_model.safetensors", "model_state.pdparams",
                             "diffusion_paddle_model.safetensors.index.json", "model_state.pdparams.index.json")),
    "vae": ("config.json", ("diffusion_paddle_model.safetensors", "model_state.pdparams",
                            "diffusion_paddle_model.safetensors.index.json", "model_state.pdparams.index.json")),
    "text_encoder": ("config.json", ("model.safetensors", "model_state.pdparams",
                                     "model.safetensors.index.json", "model_state.pdparams.index.json")),
    "tokenizer": ("vocab.json", "merges.txt"),
    "scheduler": ("scheduler_config.json",),
}
# Pack config sections that are checked against a checkpoint subfolder's config.
CONFIG_SECTIONS = {"unet": "unet", "vae": "vae", "text_encoder": "text_encoder", "noise_scheduler": "scheduler"}


def checkpoint_entry(context: WorkloadContext) -> dict[str, Any] | None:
    """Return the pack's `checkpoint` entry of the workload's model, or None when the model is built from `config`."""
    return context.model_preset.get("checkpoint")


def checkpoint_folder(context: WorkloadContext) -> Path:
    """Return the checkpoint folder under the data root, checked for every subfolder and file the SD workloads read."""
    entry = checkpoint_entry(context)
    folder = context.data_root / entry["path"]
    if not folder.is_dir():
        raise FileNotFoundError(
            f"SD checkpoint of model {context.model_name!r} is missing: no folder at {folder}. Put the "
            "StableDiffusionPipeline.save_pretrained folder there, or pass --data-root with the folder that contains "
            f"{entry['path']}"
        )
    for subfolder, names in REQUIRED_FILES.items():
        if not (folder / subfolder).is_dir():
            raise FileNotFoundError(f"SD checkpoint {folder} has no {subfolder}/ subfolder: use the complete folder "
                                    "that StableDiffusionPipeline.save_pretrained writes")
        for name in names:
            options = name if isinstance(name, tuple) else (name,)
            if not any((folder / subfolder / option).is_file() for option in options):
                raise FileNotFoundError(f"SD checkpoint {folder}: {subfolder}/ has no {' or '.join(options)}: "
                                        "restore the file from the checkpoint's release")
    return folder


def verify_checkpoint(context: WorkloadContext, folder: Path) -> dict[str, Any]:
    """Compare the folder's manifest digest with the pack's and return the record for config.json.

    The digest is the one of agent.runner.checkpoints: the sha256 of the
    `sha256sum` lines of every file, sorted by path. A null digest passes with
    a warning, because only a draft pack may contain one.
    """
    from agent.runner.checkpoints import check_digest, folder_files, manifest

    entry = checkpoint_entry(context)
    record = check_digest(f"checkpoint of model {context.model_name}", folder, manifest(folder_files(folder)),
                          entry.get("sha256"), context.pack)
    return {"path": entry["path"], "folder": record["path"], "sha256": record["sha256"], "pinned": record["pinned"]}


def read_configs(folder: Path) -> dict[str, dict[str, Any]]:
    """Return the configs of the checkpoint's parts, keyed like the pack's SD config (`noise_scheduler` for scheduler/)."""
    configs = {}
    for section, subfolder in CONFIG_SECTIONS.items():
        name = "scheduler_config.json" if subfolder == "scheduler" else "config.json"
        path = folder / subfolder / name
        try:
            configs[section] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"SD checkpoint file {path} is not valid JSON ({error}): restore it from the checkpoint's release") from None
    return configs


def check_pack_values(model_name: str, pack_config: dict[str, Any], configs: dict[str, dict[str, Any]]) -> None:
    """Raise ValueError naming the first value that the pack fixes and the checkpoint's config contradicts."""
    for section, values in pack_config.items():
        if section not in configs:
            raise ValueError(f"model {model_name!r} config section {section!r} is unknown for a checkpoint: "
                             f"use {', '.join(CONFIG_SECTIONS)}")
        for key, value in values.items():
            found = configs[section].get(key)
            # JSON round trip, so that a YAML list and the config's list compare equal.
            if json.loads(json.dumps(value)) != found:
                raise ValueError(f"model {model_name!r}: the pack fixes {section}.{key} = {value!r}, but the checkpoint's "
                                 f"{CONFIG_SECTIONS[section]} config has {found!r}; use the checkpoint the pack names")


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
