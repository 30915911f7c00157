"""Checks of the SD inputs that run before anything is written: the checkpoint's config keys and the image folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.i18n import _

# Keys by config file, relative to the checkpoint folder. ppdiffusers fills in defaults for the other keys when it loads a part.
REQUIRED_CONFIG_KEYS = {
    "unet/config.json": ("sample_size", "in_channels"),
    "vae/config.json": ("block_out_channels",),
    "text_encoder/config.json": ("vocab_size",),
}


def check_config_keys(label: str, directory: Path, configs: dict[str, Any]) -> None:
    """Reject an SD folder whose part configs lack a key that the workloads read, naming the file and the key.

    `configs` maps each config file (relative to `directory`) to its parsed JSON.
    """
    for name, keys in REQUIRED_CONFIG_KEYS.items():
        config = configs[name]
        missing = [key for key in keys if not isinstance(config, dict) or key not in config]
        if missing:
            raise AgentError("checkpoint_incomplete",
                             _("{label} at {path}: {file} has no key {keys}").format(
                                 label=label, path=directory, file=name, keys=", ".join(missing)),
                             _("restore the file from the checkpoint's release, as StableDiffusionPipeline.save_pretrained wrote it"))


def check_image_folder(label: str, folder: Path) -> None:
    """Read an SD image folder as the workload will, so that a bad caption line or image fails before the run starts."""
    from agent.workloads.sd_folder import read_image_folder

    try:
        read_image_folder(folder)
    except (ValueError, FileNotFoundError) as error:
        raise AgentError("image_folder_invalid", _("{label}: {error}").format(label=label, error=error),
                         _("fix or remove the file named, or restore the folder from the release")) from None
