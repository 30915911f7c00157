"""An image-caption folder for SD fine-tuning, in the layout PaddleMIX's text-to-image example reads.

PaddleMIX's `train_text_to_image.py --train_data_dir` takes a Hugging Face
"imagefolder with metadata": image files plus one `metadata.jsonl` whose lines
are {"file_name": "<path relative to the folder>", "text": "<caption>"}
(`--image_column image`, `--caption_column text` by default).

The agent reads the same layout, with images in the order of the metadata
lines. Each image is resized so that its shorter side is the pack's
resolution (bilinear), then cropped to a centred square of that size. Pixels
are scaled to [-1, 1], as PaddleMIX's `Normalize([0.5], [0.5])` does. Random
flips and random crops are not supported, because both sides must see the
same pixels for loss alignment.

NOTE: PaddleMIX's script (commit 7227de1c) resizes every image straight to
resolution x resolution before its centre crop, so it squeezes non-square
images. Both ways give the same pixels for square images. For other images
the agent keeps the aspect ratio and crops the longer side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

METADATA = "metadata.jsonl"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
RECIPE = (
    "images in metadata.jsonl order, image (position mod count) at stream position; RGB; shorter side resized to the "
    "resolution (bilinear), centre crop to resolution x resolution, scaled to [-1, 1]; caption = the line's text"
)


def read_image_folder(folder: Path) -> list[dict[str, Any]]:
    """Return [{"file": Path, "caption": str}] in metadata order, after checking every image and caption."""
    metadata = folder / METADATA
    if not metadata.is_file():
        raise FileNotFoundError(f"image folder {folder} has no {METADATA}: add one line per image, "
                                '{"file_name": "0001.png", "text": "caption"}, as PaddleMIX\'s --train_data_dir expects')
    rows, seen = [], set()
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{metadata} line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not JSON ({error}): write one JSON object per line") from None
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where} has no file_name: name the image file relative to {folder}")
        text = entry.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where} ({name}) has no caption: set \"text\" to a non-empty string")
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{where} names {name}, but {path} does not exist")
        check_decodes(path)
        seen.add(path.resolve())
        rows.append({"file": path, "caption": text})
    if not rows:
        raise ValueError(f"{metadata} lists no images: add one line per image")
    uncaptioned = sorted(str(path.relative_to(folder)) for path in folder.rglob("*")
                         if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and path.resolve() not in seen)
    if uncaptioned:
        raise ValueError(f"image folder {folder}: {len(uncaptioned)} image(s) have no caption line in {METADATA}, "
                         f"such as {uncaptioned[0]}: add a line for each, or move them out of the folder")
    return rows


def check_decodes(path: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"image {path} does not decode ({error}): replace it with a valid image file") from None


def load_image(path: Path, resolution: int) -> np.ndarray:
    """Return a (3, resolution, resolution) float32 image in [-1, 1]: shorter side resized, then centre crop."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    # Shorter side to `resolution`, the longer one scaled with it and truncated, as torchvision's Resize(int) does.
    if width <= height:
        size = (resolution, int(resolution * height / width))
    else:
        size = (int(resolution * width / height), resolution)
    image = image.resize(size, Image.BILINEAR)
    left = int(round((size[0] - resolution) / 2.0))
    top = int(round((size[1] - resolution) / 2.0))
    image = image.crop((left, top, left + resolution, top + resolution))
    pixels = np.asarray(image, dtype="float32") / 255.0
    return (pixels.transpose(2, 0, 1) - 0.5) / 0.5
