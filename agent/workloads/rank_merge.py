"""Evaluating and saving a tensor-parallel model without a whole copy of it on any process.

Evaluation runs on the split model: every rank runs the same batches, and
the LM head gathers the whole logits on every rank (`gathered_logits`).

Saving runs in two steps. Each tensor-parallel rank of the first
data-parallel and sharding replica writes the weights it holds, as
safetensors shards, into a folder of parts. Global rank 0 then reads the
ranks' parts of one tensor at a time and merges them with PaddleNLP's merge
rules for the architecture. It writes the results as the safetensors shards
of a folder that `from_pretrained` loads as a plain model. The
merging process keeps in memory only the shard it is filling and the parts of one tensor,
never the model.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import struct
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

# A shard is written once it would grow past this size, so it bounds what the merging process holds.
SHARD_BYTES = 1 << 30
# The folder under the model folder that contains each rank's part until rank 0 has merged them.
PARTS_FOLDER = "tensor-parallel-parts"
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
    and false makes them gather the ranks' vocabulary columns. The value the
    model trained with is restored on exit. A model that is not split is
    left as it is.
    """
    from agent.workloads.models import decoder_and_head, is_split

    if not is_split(model):
        yield model
        return
    configs = {id(config): config for config in (model.config, decoder_and_head(model)[1].config)}.values()
    saved = [(config, config.tensor_parallel_output) for config in configs]
    try:
        for config, _ in saved:
            config.tensor_parallel_output = False
        yield model
    finally:
        for config, value in saved:
            config.tensor_parallel_output = value


def save_tensor_parallel(context, model_class, model, shard_bytes: int = SHARD_BYTES) -> None:
    """Save tensor-parallel `model` to `context.model_dir` as a plain model. Every process must call this.

    The ranks of the first replica write their parts, and global
    rank 0 merges them and removes the parts. When a step fails on any
    rank, every rank raises SaveFailed right after that step.
    """
    from paddle.distributed import fleet

    group = fleet.get_hybrid_communicate_group()
    parts = context.model_dir / PARTS_FOLDER
    with failure_on_all_ranks(context, "removing the parts of an earlier save"):
        if context.is_writer and parts.exists():
            shutil.rmtree(parts)
    with failure_on_all_ranks(context, "writing the ranks' parts"):
        if group.get_data_parallel_rank() == 0 and group.get_sharding_parallel_rank() == 0:
            write_part(model, parts / f"rank{group.get_model_parallel_rank():02d}", shard_bytes)
    # NOTE: the other processes wait at the end of this block for the whole merge, an estimated few minutes of disk
    # writes for a 70e9 parameter model. Whether a device's collective timeout allows that was not tried on any card.
    with failure_on_all_ranks(context, "merging the parts"):
        if context.is_writer:
            generation_config = getattr(model, "generation_config", None)
            merge_parts(model_class, model.config, generation_config, parts, context.model_dir, shard_bytes)
            shutil.rmtree(parts)


class SaveFailed(RuntimeError):
    """A step of a tensor-parallel save failed on at least one rank. Every rank raises it."""


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
        raise SaveFailed(f"saving the tensor-parallel model to {context.model_dir} failed while {step} on "
                         f"{len(failed)} of {len(messages)} ranks ({'; '.join(failed)}): fix the cause, then continue "
                         "the run with --resume") from error


def write_part(model, folder: Path, shard_bytes: int = SHARD_BYTES) -> None:
    """Write the weights of this rank's part, copied to the host one tensor at a time."""
    state = model.state_dict()
    write_shards(((name, tensor.numpy()) for name, tensor in state.items()), folder, shard_bytes)


def merge_parts(model_class, config, generation_config, parts: Path, out: Path, shard_bytes: int = SHARD_BYTES) -> None:
    """Merge the rank folders under `parts` tensor by tensor into a plain model folder `out`.

    `config` is the split model's config. PaddleNLP's merge actions for
    `model_class` under it put each split tensor back together, and the
    others are taken from rank 0. `out` gets a config of one process.
    """
    ranks = sorted(path for path in parts.iterdir() if path.is_dir())
    degree = int(config.tensor_parallel_degree)
    if len(ranks) != degree:
        raise RuntimeError(f"{parts} contains the parts of {len(ranks)} ranks ({[path.name for path in ranks]}), but the "
                           f"model is split over {degree}: the missing ranks failed to write their part, so save again")
    locations = [tensor_locations(rank) for rank in ranks]
    names = list(locations[0])
    for rank, located in zip(ranks, locations):
        if sorted(located) != sorted(names):
            raise RuntimeError(f"{rank} and {ranks[0]} contain different tensors ({sorted(set(located) ^ set(names))}): "
                               "the parts come from different models, so save again")
    actions = model_class.get_tensor_parallel_convert_actions(config, names, is_split=False, ignore_error=True)

    def merged(name: str) -> np.ndarray:
        pieces = [read_tensor(*located[name]) for located in locations]
        return actions[name](pieces) if name in actions else pieces[0]

    remove_weights(out)
    write_shards(((name, merged(name)) for name in names), out, shard_bytes)
    plain_config(config, model_class).save_pretrained(str(out))
    if generation_config is not None:
        generation_config.save_pretrained(str(out))


def plain_config(config, model_class):
    """Return a copy of a tensor-parallel model's config for one process."""
    plain = copy.deepcopy(config)
    plain.tensor_parallel_degree, plain.tensor_parallel_rank = 1, 0
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
