"""The weight files of a checkpoint folder: the files PaddleNLP loads, their shards and the data type they store.

PaddleNLP 3.0.0b4's `from_pretrained` (model_utils._resolve_model_file_path)
looks in a local folder for, in this order: `model.safetensors.index.json`,
`model.safetensors`, `model_state.pdparams.index.json`,
`model_state.pdparams`. The first one found is what it loads, and FORMATS
keeps that order. An index is what `save_pretrained(..., max_shard_size=...)`
writes: its `weight_map` maps every parameter to a shard file in the same
folder, named `<stem>-<i>-of-<n><suffix>` (`model-00001-of-00003.safetensors`,
`model_state-00001-of-00003.pdparams`). A file named like a shard of the
loaded format that the loaded index does not name is a stray shard, such as
the leftover of another release, and is rejected. Files of a format that is
not loaded are left alone, but the folder's digest still covers them.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from agent.errors import AgentError
from agent.i18n import _

# safetensors dtype codes -> Paddle dtype names. PaddleNLP 3.0.0b4 writes bfloat16 tensors as U16, because NumPy has
# no bfloat16 type, and reads U16 back as bfloat16 (paddlenlp.transformers.utils.convert_ndarray_dtype).
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "U16": "bfloat16",
                      "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
                      "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
# The safetensors format limits its JSON header to 100 MB.
MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class WeightFormat:
    """One way to store weights: a single file, or an index that names its shards."""

    single: str
    index: str

    def is_shard(self, name: str) -> bool:
        """True when `name` has the form of one of this format's shard files."""
        stem, dot, suffix = self.single.rpartition(".")
        return re.fullmatch(re.escape(stem) + r"-\d+-of-\d+" + re.escape(dot + suffix), name) is not None


FORMATS = (WeightFormat("model.safetensors", "model.safetensors.index.json"),
           WeightFormat("model_state.pdparams", "model_state.pdparams.index.json"))
# ppdiffusers' UNet and VAE folders. NOTE: their search order was not read in ppdiffusers' source; it is assumed to be
# PaddleNLP's (safetensors first).
DIFFUSION_FORMATS = (WeightFormat("diffusion_paddle_model.safetensors", "diffusion_paddle_model.safetensors.index.json"),
                     WeightFormat("model_state.pdparams", "model_state.pdparams.index.json"))


def check_weight_files(label: str, directory: Path, formats: tuple[WeightFormat, ...] = FORMATS) -> dict[str, Any]:
    """Find the weights that from_pretrained loads from `directory` and check them. Return their record.

    The record names the single file or the index (`index`, else None) and
    lists the weight `files` it covers. An index must name at least one shard,
    each a plain file name that exists in the folder, and no file named like a
    shard of the loaded format may lie there that the index does not name.
    """
    for weight_format in formats:
        if (directory / weight_format.index).is_file():
            files, index = index_shards(label, directory, weight_format.index), weight_format.index
            break
        if (directory / weight_format.single).is_file():
            files, index = [weight_format.single], None
            break
    else:
        names = [name for weight_format in formats for name in (weight_format.single, weight_format.index)]
        raise AgentError("checkpoint_incomplete", _("{label} at {path} has no weights: none of {names}").format(
                             label=label, path=directory, names=", ".join(names)),
                         _("copy the whole checkpoint folder, as save_pretrained wrote it"))
    stray = sorted(path.name for path in directory.iterdir() if path.name not in files and weight_format.is_shard(path.name))
    if stray:
        raise AgentError("checkpoint_stray_weights", _("{label} at {path} contains weight files {names} that {loaded} does not name").format(
                             label=label, path=directory, names=", ".join(stray), loaded=index or files[0]),
                         _("remove them, or copy the released checkpoint folder again"))
    return {"index": index, "files": files}


def index_shards(label: str, directory: Path, index_name: str) -> list[str]:
    """Return the shard files that an index's weight_map names, sorted, after checking that each exists."""
    weight_map = _read_index(label, directory / index_name).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(name, str) for name in weight_map.values()):
        raise AgentError("checkpoint_index_invalid", _("{label} at {path}: {index} has no weight_map from parameter names to shard files").format(
                             label=label, path=directory, index=index_name),
                         _("copy the index file again, as save_pretrained wrote it"))
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if shard in ("", ".", "..") or PurePosixPath(shard).name != shard or "\\" in shard:
            raise AgentError("checkpoint_index_invalid", _("{label} at {path}: {index} names shard {shard}, which is not a file name in the folder").format(
                                 label=label, path=directory, index=index_name, shard=repr(shard)),
                             _("copy the index file again, as save_pretrained wrote it"))
    missing = [shard for shard in shards if not (directory / shard).is_file()]
    if missing:
        raise AgentError("checkpoint_incomplete", _("{label} at {path} lacks the weight files {names} that {index} names").format(
                             label=label, path=directory, names=", ".join(missing), index=index_name),
                         _("copy the whole checkpoint folder"))
    return shards


def _read_index(label: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AgentError("checkpoint_index_invalid", _("{label}: {path} is not valid JSON: {error}").format(label=label, path=path, error=error),
                         _("copy the index file again, as save_pretrained wrote it")) from None
    return data if isinstance(data, dict) else {}


def stored_dtypes(label: str, directory: Path, files: list[str], config: dict[str, Any]) -> tuple[list[str], str | None]:
    """Return the data types the weights are stored in, sorted, and where that was read.

    safetensors files carry a dtype per tensor in their header, which is read
    without reading the tensors. A pdparams file is a pickle that would have
    to be read whole, so for it the `dtype` (PaddleNLP) or `torch_dtype`
    (Hugging Face) that config.json records is used. Without either the list is empty.
    """
    if all(name.endswith(".safetensors") for name in files):
        found = set()
        for name in files:
            found.update(safetensors_dtypes(label, directory / name))
        return sorted(found), "safetensors header"
    declared = config.get("dtype") or config.get("torch_dtype")
    return ([str(declared)], "config.json") if declared else ([], None)


def safetensors_dtypes(label: str, path: Path) -> set[str]:
    """Return the Paddle names of the dtypes in a safetensors file's header (8-byte little-endian size, then JSON)."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        prefix = stream.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else -1
        if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
            raise AgentError("checkpoint_weights_invalid", _("{label}: {path} is not a safetensors file: its header size is invalid").format(
                                 label=label, path=path), _("copy the file again from the checkpoint's release"))
        try:
            header = json.loads(stream.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise AgentError("checkpoint_weights_invalid", _("{label}: {path} is not a safetensors file: its header is not JSON ({error})").format(
                                 label=label, path=path, error=error), _("copy the file again from the checkpoint's release")) from None
    codes = {entry.get("dtype") for name, entry in header.items() if name != "__metadata__" and isinstance(entry, dict)}
    return {SAFETENSORS_DTYPES.get(code, str(code).lower()) for code in codes}
