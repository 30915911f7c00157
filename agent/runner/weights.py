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

A tensor-parallel model that `save_pretrained` writes without merging its
ranks stores one file (or one index and its shards) per rank, with
`tp<rank>` inserted before the last dot of the name (model_utils._add_variant
with utils.weight_name_suffix): `model_state.tp00.pdparams`,
`model.tp00.safetensors`, `model_state.pdparams.index.tp00.json` naming
`model_state.tp00-00001-of-00002.pdparams`. In a run with
tensor_parallel_degree N, `from_pretrained` has rank r load the file of rank r
as it is, and a run without tensor parallelism finds none of them. So such a
folder is accepted only complete (ranks 0 to N-1 of one layout, N at least 2,
nothing else that from_pretrained could load) and only for a run with the
same degree and without pipeline parallelism (check_tensor_parallel_degree).

Under pipeline parallelism the suffix names the stage as well: `pp<stage>`,
or `tp<rank>_pp<stage>` with tensor parallelism (`model_state.tp00_pp01.pdparams`).
The agent does not load such per-stage files, and a folder that has no other
weights is rejected with a message that names them.
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


def check_weight_files(label: str, directory: Path, formats: tuple[WeightFormat, ...] = FORMATS,
                       config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Find the weights that from_pretrained loads from `directory` and check them. Return their record.

    The record names the single file or the index (`index`, else None) and
    lists the weight `files` it covers. An index must name at least one shard,
    each a plain file name that exists in the folder, and no file named like a
    shard of the loaded format may lie there that the index does not name.
    A folder of per-rank files (language models only) is checked by
    check_rank_files against `config`, the folder's config.json.
    """
    if formats == FORMATS:
        rank_files = {name: parsed for name in sorted(path.name for path in directory.iterdir() if path.is_file())
                      if (parsed := parse_rank_file(name)) is not None}
        if rank_files:
            return check_rank_files(label, directory, rank_files, config or {})
    for weight_format in formats:
        if (directory / weight_format.index).is_file():
            files, index = index_shards(label, directory, weight_format.index), weight_format.index
            break
        if (directory / weight_format.single).is_file():
            files, index = [weight_format.single], None
            break
    else:
        if formats == FORMATS:
            reject_stage_files(label, directory)
        names = [name for weight_format in formats for name in (weight_format.single, weight_format.index)]
        if formats == FORMATS:
            names += [rank_name(name, 0) for name in names]
        raise AgentError("checkpoint_incomplete", _("{label} at {path} has no weights: none of {names}").format(
                             label=label, path=directory, names=", ".join(names)),
                         _("copy the whole checkpoint folder, as save_pretrained wrote it"))
    stray = sorted(path.name for path in directory.iterdir() if path.name not in files and weight_format.is_shard(path.name))
    if stray:
        raise AgentError("checkpoint_stray_weights", _("{label} at {path} contains weight files {names} that {loaded} does not name").format(
                             label=label, path=directory, names=", ".join(stray), loaded=index or files[0]),
                         _("remove them, or copy the released checkpoint folder again"))
    return {"index": index, "files": files}


# Per-rank tensor-parallel files ------------------------------------------------------------------

# utils.weight_name_suffix writes `pp{stage:0>2d}` after the rank, joined by "_", under pipeline parallelism.
STAGE_PATTERN = r"\.(?:tp\d{2,}_)?pp\d{2,}(?:\.|-\d+-of-\d+\.)"

# utils.weight_name_suffix formats the rank as `tp{rank:0>2d}`: two digits at least.
RANK_PATTERN = r"\.tp(\d{2,})"


@dataclass(frozen=True)
class RankFile:
    """A per-rank weight file: its format, its kind ("single", "index" or "shard") and its tensor-parallel rank."""

    weight_format: WeightFormat
    kind: str
    rank: int


def rank_name(name: str, rank: int) -> str:
    """Return the per-rank name of a weight or index file name: `tp<rank>` inserted before the last dot."""
    head, _dot, tail = name.rpartition(".")
    return f"{head}.tp{rank:0>2d}.{tail}"


def parse_rank_file(name: str) -> RankFile | None:
    """Return what a file name is as a per-rank weight file of FORMATS, or None when it is not one."""
    for weight_format in FORMATS:
        stem, _dot, suffix = weight_format.single.rpartition(".")
        patterns = {"single": re.escape(stem) + RANK_PATTERN + r"\." + re.escape(suffix),
                    "index": re.escape(weight_format.index.rpartition(".")[0]) + RANK_PATTERN + r"\.json",
                    "shard": re.escape(stem) + RANK_PATTERN + r"-\d+-of-\d+\." + re.escape(suffix)}
        for kind, pattern in patterns.items():
            match = re.fullmatch(pattern, name)
            # A rank written with more digits than PaddleNLP writes (tp000) is not a name it looks for.
            if match and match[1] == f"{int(match[1]):0>2d}":
                return RankFile(weight_format, kind, int(match[1]))
    return None


def _is_plain_weight_file(name: str) -> bool:
    return any(name in (weight_format.single, weight_format.index) or weight_format.is_shard(name) for weight_format in FORMATS)


def check_rank_files(label: str, directory: Path, rank_files: dict[str, RankFile], config: dict[str, Any]) -> dict[str, Any]:
    """Check a folder of per-rank tensor-parallel weight files and return their record.

    The folder may contain no weights of one whole model beside them. Its
    per-rank files have one layout: one format, and for every rank either one
    file or one index with its shards. They cover ranks 0 to N-1 with N at
    least 2, and every one of them is loaded. A `tensor_parallel_degree` in
    config.json must be N. The record adds `tensor_parallel_degree` (N) and
    `rank_indexes` (the per-rank indexes, if any).
    """
    plain = sorted(path.name for path in directory.iterdir() if _is_plain_weight_file(path.name))
    if plain:
        raise AgentError("checkpoint_mixed_weights", _("{label} at {path} contains per-rank tensor-parallel weight files ({ranked}) and the weights of a whole model ({plain})").format(
                             label=label, path=directory, ranked=", ".join(rank_files), plain=", ".join(plain)),
                         _("keep the files of one save only: remove the per-rank files or the others, or copy the released checkpoint folder again"))
    layouts: dict[tuple[WeightFormat, str], list[str]] = {}
    for name, parsed in rank_files.items():
        if parsed.kind != "shard":
            layouts.setdefault((parsed.weight_format, parsed.kind), []).append(name)
    if len(layouts) > 1:
        raise AgentError("checkpoint_mixed_weights", _("{label} at {path} mixes per-rank weight files of {count} layouts: {names}").format(
                             label=label, path=directory, count=len(layouts), names=", ".join(names[0] for names in layouts.values())),
                         _("keep the files of one save only: one format, and for every rank either one file or one index with its shards"))
    if not layouts:
        raise AgentError("checkpoint_incomplete", _("{label} at {path} contains per-rank shards ({names}) but no per-rank index that names them").format(
                             label=label, path=directory, names=", ".join(rank_files)),
                         _("copy the whole checkpoint folder, as save_pretrained wrote it"))
    (weight_format, kind), names = next(iter(layouts.items()))
    degree = _check_rank_numbers(label, directory, weight_format.single if kind == "single" else weight_format.index, names, rank_files, config)

    files = list(names)
    if kind == "index":
        files = [shard for name in names for shard in _rank_shards(label, directory, name, rank_files[name])]
    stray = sorted(set(rank_files) - set(files) - set(names))
    if stray:
        raise AgentError("checkpoint_stray_weights", _("{label} at {path} contains weight files {names} that none of {loaded} names").format(
                             label=label, path=directory, names=", ".join(stray), loaded=", ".join(names)),
                         _("remove them, or copy the released checkpoint folder again"))
    return {"index": None, "files": sorted(files), "tensor_parallel_degree": degree, "rank_indexes": names if kind == "index" else []}


def _check_rank_numbers(label: str, directory: Path, plain_name: str, names: list[str], rank_files: dict[str, RankFile],
                        config: dict[str, Any]) -> int:
    """Check that `names` are the ranks 0 to N-1, N at least 2, and agree with config.json. Return N."""
    ranks = {rank_files[name].rank for name in names}
    degree = max(max(ranks) + 1, 2)
    missing = [rank_name(plain_name, rank) for rank in range(degree) if rank not in ranks]
    if missing:
        raise AgentError("checkpoint_incomplete", _("{label} at {path} has the per-rank weight files {names} but lacks {missing}").format(
                             label=label, path=directory, names=", ".join(names), missing=", ".join(missing)),
                         _("copy the file of every rank: a save with tensor_parallel_degree N writes one for each rank from tp00 to N-1, and N is at least 2"))
    recorded = config.get("tensor_parallel_degree")
    if recorded is not None and recorded != degree:
        raise AgentError("checkpoint_config_mismatch", _("{label} at {path} has per-rank weight files for {degree} tensor-parallel ranks, but its config.json records tensor_parallel_degree={recorded}").format(
                             label=label, path=directory, degree=degree, recorded=repr(recorded)),
                         _("copy the config.json and the weight files of one save again; they must come from the same save_pretrained call"))
    return degree


def _rank_shards(label: str, directory: Path, index_name: str, index: RankFile) -> list[str]:
    """Return the shards that a per-rank index names, after checking that each exists and belongs to the index's rank."""
    shards = index_shards(label, directory, index_name)
    foreign = [shard for shard in shards if parse_rank_file(shard) != RankFile(index.weight_format, "shard", index.rank)]
    if foreign:
        raise AgentError("checkpoint_index_invalid", _("{label} at {path}: {index} names {shards}, which are not shard files of rank {rank}").format(
                             label=label, path=directory, index=index_name, shards=", ".join(foreign), rank=index.rank),
                         _("copy the index file again, as save_pretrained wrote it"))
    return shards


def reject_stage_files(label: str, directory: Path) -> None:
    """Reject a folder without other weights whose weight files are per pipeline stage (`model_state.tp00_pp01.pdparams`)."""
    stage_files = sorted(path.name for path in directory.iterdir()
                         if path.name.startswith("model") and re.search(STAGE_PATTERN, path.name))
    if stage_files:
        raise AgentError("checkpoint_stage_weights", _("{label} at {path} contains only per-stage pipeline weight files ({names}), which the agent does not load").format(
                             label=label, path=directory, names=", ".join(stage_files)),
                         _("pin a folder with the weights of the whole model, or with per-rank tensor-parallel files only (see docs/training.md, 'Released checkpoints')"))


def check_tensor_parallel_degree(weights: dict[str, Any], path: str, degree: int, pipeline_degree: int = 1) -> None:
    """Reject per-rank weight files for a run whose tensor_parallel_degree is not the number of files, or that has pipeline stages.

    PaddleNLP 3.0.0b4's from_pretrained loads the file of rank r into rank r as
    it is, without splitting or merging, and a run without tensor parallelism
    finds no weights in such a folder. Under pipeline parallelism it looks for
    files of rank and stage (`model_state.tp00_pp00.pdparams`), so it finds no
    weights either. A checkpoint of one whole model (no
    `tensor_parallel_degree` in `weights`) loads under any degrees.
    """
    saved = weights.get("tensor_parallel_degree")
    if saved is not None and saved != degree:
        raise AgentError("checkpoint_parallel_mismatch", _("the checkpoint at {path} is saved as per-rank files of tensor_parallel_degree {saved}, but this run has tensor_parallel_degree {degree}").format(
                             path=path, saved=saved, degree=degree),
                         _("run with --set tensor_parallel_degree={saved}, or load a checkpoint with the ranks merged into one model (see docs/training.md, 'Released checkpoints')").format(saved=saved))
    if saved is not None and pipeline_degree > 1:
        raise AgentError("checkpoint_parallel_mismatch", _("the checkpoint at {path} is saved as per-rank files of tensor_parallel_degree {saved}, which PaddleNLP does not load under pipeline_parallel_degree {pipeline}").format(
                             path=path, saved=saved, pipeline=pipeline_degree),
                         _("run with --set pipeline_parallel_degree=1, or load a checkpoint with the ranks merged into one model (see docs/training.md, 'Released checkpoints')"))


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
