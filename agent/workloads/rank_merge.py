"""Evaluating and saving a split model without a whole copy of it on any process.

A model is split over tensor-parallel ranks, pipeline stages, or both.
Evaluation runs on the split model. Under tensor parallelism every rank runs
the same batches, and the LM head gathers the whole logits on every rank
(`gathered_logits`). Pipeline stages pass activations to each other
(agent.workloads.stage_forward).

Saving runs in two steps. Each process of the first data-parallel and
sharding replica (one per stage and tensor-parallel rank) writes the
weights it holds, keyed by the plain model's names, as safetensors shards
into a folder of parts. Global rank 0 then reads the parts of one tensor at
a time and merges the tensor-parallel ranks of a stage with PaddleNLP's
merge rules for the architecture. It writes the stages in order as the
safetensors shards of a folder that `from_pretrained` loads as a plain
model. The merging process keeps in memory only the shard it is filling and
the parts of one tensor, never the model.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import shutil
import struct
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

# A shard is written once it would grow past this size, so it bounds what the merging process holds.
SHARD_BYTES = 1 << 30
# The folder under the model folder that contains each process's part until rank 0 has merged them.
PARTS_FOLDER = "parallel-parts"
# A part's folder name: its pipeline stage and its tensor-parallel rank in that stage.
PART_NAME = re.compile(r"stage(\d+)-rank(\d+)")
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
# safetensors dtype codes of what a part may hold. Paddle returns bfloat16 tensors as uint16 arrays, and
# PaddleNLP 3.0.0b4's save_pretrained stores them as U16, as this module does.
NUMPY_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "U16": "uint16", "BF16": "uint16",
                "I64": "int64", "I32": "int32", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


@contextlib.contextmanager
def gathered_logits(model):
    """Within the block, let the LM head of a tensor-parallel `model` return the whole logits on every rank.

    PaddleNLP's LM heads read `config.tensor_parallel_output` at forward time,
    and false makes them gather the ranks' vocabulary columns. The configs of
    the model and of every layer that has its own are changed, which covers
    the LM head of a plain model and of a `*Pipe` stage. The values the
    model trained with are restored on exit. A model that is not split is
    left as it is.
    """
    from agent.workloads.models import is_split

    if not is_split(model):
        yield model
        return
    layers = [model, *model.sublayers()]
    configs = {id(layer.config): layer.config for layer in layers
               if hasattr(getattr(layer, "config", None), "tensor_parallel_output")}.values()
    saved = [(config, config.tensor_parallel_output) for config in configs]
    try:
        for config, _ in saved:
            config.tensor_parallel_output = False
        yield model
    finally:
        for config, value in saved:
            config.tensor_parallel_output = value


def part_name(stage: int, rank: int) -> str:
    return f"stage{stage:02d}-rank{rank:02d}"


def save_split(context, model_class, model, shard_bytes: int = SHARD_BYTES) -> None:
    """Save a tensor-parallel or pipeline `model` to `context.model_dir` as a plain model. Every process must call this.

    The processes of the first replica write their parts, one per stage
    and tensor-parallel rank, and global rank 0 merges them and removes
    the parts. When a step fails on any rank, every rank raises SaveFailed
    right after that step.
    """
    from paddle.distributed import fleet

    group = fleet.get_hybrid_communicate_group()
    parts = context.model_dir / PARTS_FOLDER
    with failure_on_all_ranks(context, "removing the parts of an earlier save"):
        if context.is_writer and parts.exists():
            shutil.rmtree(parts)
    with failure_on_all_ranks(context, "writing the ranks' parts"):
        if group.get_data_parallel_rank() == 0 and group.get_sharding_parallel_rank() == 0:
            stage = max(group.get_stage_id(), 0)
            write_part(model, parts / part_name(stage, max(group.get_model_parallel_rank(), 0)), shard_bytes)
    # NOTE: the other processes wait at the end of this block for the whole merge, an estimated few minutes of disk
    # writes for a 70e9 parameter model. Whether a device's collective timeout allows that was not tried on any card.
    with failure_on_all_ranks(context, "merging the parts"):
        if context.is_writer:
            generation_config = getattr(model, "generation_config", None)
            if generation_config is None:
                # A `*Pipe` model cannot generate, so it has no generation config. The plain class derives its own
                # from the model config when it is built, and so does this.
                from paddlenlp.generation import GenerationConfig

                generation_config = GenerationConfig.from_model_config(plain_config(model.config, model_class))
            merge_parts(model_class, model.config, generation_config, parts, context.model_dir, shard_bytes,
                        stages=max(group.get_pipe_parallel_world_size(), 1))
            shutil.rmtree(parts)


class SaveFailed(RuntimeError):
    """A step of a tensor-parallel or pipeline save failed on at least one rank. Every rank raises it."""


@contextlib.contextmanager
def failure_on_all_ranks(context, step: str):
    """Run the block on every process, wait for all of them, and raise SaveFailed on each if the block failed on any.

    The processes exchange their error messages (None after success) with
    `all_gather_object` over the global group. That exchange is the barrier
    after the block, so a rank whose block raised still reaches it, and the
    others learn of the failure at once instead of waiting at a later
    barrier until the collective timeout. The message names `step`, the
    model folder and each failed rank with its error, and on a failed rank
    the exception chains that rank's own error.
    """
    error: Exception | None = None
    try:
        yield
    except Exception as raised:  # any failure of the step must reach the other ranks, or they wait for this one
        error = raised
    message = f"{type(error).__name__}: {error}" if error is not None else None
    messages = [message]
    if context.cards > 1:
        import paddle.distributed

        messages = []
        paddle.distributed.all_gather_object(messages, message)
    failed = [f"rank {rank}: {text}" for rank, text in enumerate(messages) if text is not None]
    if failed:
        raise SaveFailed(f"saving the split model to {context.model_dir} failed while {step} on "
                         f"{len(failed)} of {len(messages)} ranks ({'; '.join(failed)}): fix the cause, then continue "
                         "the run with --resume") from error


def write_part(model, folder: Path, shard_bytes: int = SHARD_BYTES) -> None:
    """Write the weights of this process's part, keyed by the plain model's names, copied to the host one tensor at a time.

    A `*Pipe` model's state_dict already names its weights as the plain
    model does (PaddleNLP's PipelinePretrainedModel maps them).
    """
    state = model.state_dict()
    write_shards(((name, tensor.numpy()) for name, tensor in state.items()), folder, shard_bytes)


def part_folders(parts: Path, config, stages: int) -> list[list[Path]]:
    """Return the part folders under `parts` grouped by pipeline stage, each stage's in tensor-parallel rank order.

    Raise RuntimeError when a stage or a rank of `config`'s tensor-parallel
    degree has no folder, or a folder is not a part.
    """
    degree = max(int(getattr(config, "tensor_parallel_degree", 1)), 1)
    found = {}
    for path in sorted(parts.iterdir()):
        match = PART_NAME.fullmatch(path.name)
        if not path.is_dir() or match is None:
            raise RuntimeError(f"{path} is not a part: a part is a folder named like {part_name(0, 0)}, so save again")
        found[int(match[1]), int(match[2])] = path
    expected = [(stage, rank) for stage in range(stages) for rank in range(degree)]
    if sorted(found) != expected:
        raise RuntimeError(f"{parts} contains the parts of {len(found)} ranks ({[path.name for path in found.values()]}), "
                           f"but the model is split over {stages} stage(s) x {degree} tensor-parallel rank(s): the "
                           "missing ranks failed to write their part, so save again")
    return [[found[stage, rank] for rank in range(degree)] for stage in range(stages)]


def merge_parts(model_class, config, generation_config, parts: Path, out: Path, shard_bytes: int = SHARD_BYTES,
                stages: int = 1) -> None:
    """Merge the part folders under `parts` tensor by tensor into a plain model folder `out`.

    `config` is the split model's config, and `stages` the number of
    pipeline stages, which a `*Pipe` model's config does not always
    record. Within a stage, PaddleNLP's merge
    actions for `model_class` under it put each split tensor back together,
    and the others are taken from rank 0. The stages follow each other in
    order. A weight that two stages both hold (tied embeddings) is taken
    from the first. `out` gets a config of one process.
    """
    folders = part_folders(parts, config, stages)
    plan: list[tuple[list[dict[str, Any]], dict[str, Any], str]] = []
    merged_names: set[str] = set()
    for ranks in folders:
        locations = [tensor_locations(rank) for rank in ranks]
        names = list(locations[0])
        for rank, located in zip(ranks, locations):
            if sorted(located) != sorted(names):
                raise RuntimeError(f"{rank} and {ranks[0]} contain different tensors ({sorted(set(located) ^ set(names))}): "
                                   "the parts come from different models, so save again")
        actions = {}
        if len(ranks) > 1:
            actions = model_class.get_tensor_parallel_convert_actions(config, names, is_split=False, ignore_error=True)
        plan.extend((locations, actions, name) for name in names if name not in merged_names)
        merged_names.update(names)

    def merged(locations: list[dict[str, Any]], actions: dict[str, Any], name: str) -> np.ndarray:
        pieces = [read_tensor(*located[name]) for located in locations]
        return actions[name](pieces) if name in actions else pieces[0]

    remove_weights(out)
    write_shards(((name, merged(locations, actions, name)) for locations, actions, name in plan), out, shard_bytes)
    plain_config(config, model_class).save_pretrained(str(out))
    if generation_config is not None:
        generation_config.save_pretrained(str(out))


def plain_config(config, model_class):
    """Return a copy of a split model's config for one process."""
    plain = copy.deepcopy(config)
    plain.tensor_parallel_degree, plain.tensor_parallel_rank = 1, 0
    plain.pipeline_parallel_degree = 1
    plain.tensor_parallel_output = type(config)().tensor_parallel_output
    plain.architectures = [model_class.__name__]
    return plain


def remove_weights(folder: Path) -> None:
    """Remove the weight files a former save left in `folder`, so that only the new ones are loaded."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.is_file() and (path.name.startswith(("model-", "model_state")) or path.name in (SAFE_WEIGHTS, SAFE_INDEX)):
            path.unlink()


def write_shards(tensors: Iterable[tuple[str, np.ndarray]], folder: Path, shard_bytes: int = SHARD_BYTES) -> None:
    """Write `tensors` in order as safetensors shards of at most `shard_bytes` (unless one tensor is larger).

    One shard is `model.safetensors`; several are `model-<i>-of-<n>.safetensors`
    with `model.safetensors.index.json`, as PaddleNLP's `save_pretrained`
    names them. Only the shard being filled is kept in memory, and it never
    exceeds `shard_bytes` while the next tensor is read.
    """
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, list[str]]] = []
    shard: dict[str, np.ndarray] = {}
    size = total = 0
    for name, array in tensors:
        if shard and size + array.nbytes > shard_bytes:
            written.append(flush(save_file, shard, folder, len(written)))
            shard, size = {}, 0
        shard[name] = np.ascontiguousarray(array)
        size += array.nbytes
        total += array.nbytes
        if size >= shard_bytes:
            # A full shard, or a tensor larger than a shard, is written before the next tensor is read.
            written.append(flush(save_file, shard, folder, len(written)))
            shard, size = {}, 0
    if shard or not written:
        written.append(flush(save_file, shard, folder, len(written)))
    name_shards(folder, written, total)


def flush(save_file, shard: dict[str, np.ndarray], folder: Path, number: int) -> tuple[Path, list[str]]:
    path = folder / f"shard-{number:05d}.tmp"
    save_file(shard, str(path), metadata={"format": "np"})
    return path, list(shard)


def name_shards(folder: Path, written: list[tuple[Path, list[str]]], total: int) -> None:
    """Give the written shards their final names, and write the index when there are several."""
    if len(written) == 1:
        written[0][0].replace(folder / SAFE_WEIGHTS)
        return
    weight_map = {}
    for number, (path, names) in enumerate(written, start=1):
        final = f"model-{number:05d}-of-{len(written):05d}.safetensors"
        path.replace(folder / final)
        weight_map.update(dict.fromkeys(names, final))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def tensor_locations(folder: Path) -> dict[str, tuple[Path, int, dict[str, Any]]]:
    """Return, in stored order, each tensor of a folder that write_shards wrote: its file, data start and header entry."""
    index = folder / SAFE_INDEX
    files = (list(dict.fromkeys(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
             if index.exists() else [SAFE_WEIGHTS])
    locations = {}
    for file in files:
        path = folder / file
        start, header = read_header(path)
        locations.update({name: (path, start, entry) for name, entry in header.items()})
    if index.exists():
        order = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        locations = {name: locations[name] for name in order}
    return locations


def read_header(path: Path) -> tuple[int, dict[str, Any]]:
    """Return where the data of safetensors file `path` starts and its tensor entries in file order."""
    with path.open("rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        header = json.loads(stream.read(length))
    header.pop("__metadata__", None)
    return 8 + length, dict(sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]))


def read_tensor(path: Path, start: int, entry: dict[str, Any]) -> np.ndarray:
    """Read one tensor into memory with a plain file read, so that nothing else of the file stays mapped."""
    if entry["dtype"] not in NUMPY_DTYPES:
        raise ValueError(f"{path} stores a tensor as {entry['dtype']}, which the merge cannot read: "
                         f"it reads {', '.join(NUMPY_DTYPES)}")
    begin, end = entry["data_offsets"]
    dtype = np.dtype(NUMPY_DTYPES[entry["dtype"]])
    with path.open("rb") as stream:
        stream.seek(start + begin)
        array = np.fromfile(stream, dtype=dtype, count=(end - begin) // dtype.itemsize)
    return array.reshape(entry["shape"])


def iter_tensors(folder: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield every tensor of a folder that write_shards wrote, one at a time."""
    for name, location in tensor_locations(folder).items():
        yield name, read_tensor(*location)
