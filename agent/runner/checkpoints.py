"""Released checkpoints and pre-tokenized corpora: their files, their digest and the checks before a run.

A folder input (a PaddleNLP checkpoint) and a multi-file input (a
PaddleNLP memory-mapped corpus, `<prefix>.bin` + `<prefix>.idx`, or a `bpe`
tokenizer, `vocab.json` + `merges.txt`) have one digest each: the sha256 of a manifest with one line per file,
`<file sha256>  <relative path>\\n`, sorted by path in byte order. That is
the output of `sha256sum` over the files in that order, so staff can compute
the digest on any machine:

    cd CHECKPOINT && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum

Every file is read in 1 MiB chunks, so a 140 GB checkpoint never sits in memory.
A null digest in a draft pack means "not pinned yet": the agent computes the
digest, records it in run.json and config.json with `pinned: false`, and
warns. Published packs cannot hold a null digest (certification.rulepack).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from certification.rulepack import RulePack

from agent.errors import AgentError
from agent.runner.overrides import TRAINER_KINDS
from agent.runner.sd_inputs import check_config_keys
from agent.runner.weights import DIFFUSION_FORMATS, FORMATS, check_weight_files, stored_dtypes
from agent.i18n import N_, _

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
# A ppdiffusers pipeline folder (StableDiffusionPipeline.save_pretrained) has model_index.json at its root and
# one subfolder per part. SD_REQUIRED_FILES maps each subfolder to the files it must contain, and SD_WEIGHTS the
# subfolders with weights to the weight formats they may hold (agent.runner.weights).
SD_ARCHITECTURE = "StableDiffusionPipeline"
SD_INDEX_NAME = "model_index.json"
SD_REQUIRED_FILES = {
    "unet": ("config.json",),
    "vae": ("config.json",),
    "text_encoder": ("config.json",),
    "tokenizer": ("vocab.json", "merges.txt"),
    "scheduler": ("scheduler_config.json",),
}
SD_WEIGHTS = {"unet": DIFFUSION_FORMATS, "vae": DIFFUSION_FORMATS, "text_encoder": FORMATS}
# Sections of an SD model's pack `config` -> the part config in the folder that they are checked against.
SD_CONFIG_FILES = {"unet": "unet/config.json", "vae": "vae/config.json", "text_encoder": "text_encoder/config.json",
                   "noise_scheduler": "scheduler/scheduler_config.json"}
MMAP_FORMAT = "paddlenlp_mmap"
MMAP_SUFFIXES = (".bin", ".idx")
BPE_MERGES = "merges.txt"


# Message names of the inputs, by the first word of their record labels in run.json (such as "dataset lambada").
INPUT_NAMES = {"dataset": N_("dataset {name}"), "tokenizer": N_("tokenizer {name}"), "checkpoint": N_("checkpoint of model {name}")}


def describe_input(label: str) -> str:
    """Return an input's record label, such as "dataset lambada", as messages in the user's language name it."""
    kind, _space, name = label.partition(" ")
    return _(INPUT_NAMES[kind]).format(name=name) if kind in INPUT_NAMES else label


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(files: dict[str, Path]) -> list[dict[str, str]]:
    """Return `{"path", "sha256"}` of each file, sorted by the name's UTF-8 bytes (the order of `LC_ALL=C sort`)."""
    return [{"path": name, "sha256": sha256_file(files[name])} for name in sorted(files, key=lambda name: name.encode())]


def manifest_sha256(entries: list[dict[str, str]]) -> str:
    """Return the sha256 of the manifest text, one `sha256sum` line per file."""
    text = "".join(f"{entry['sha256']}  {entry['path']}\n" for entry in entries)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_files(directory: Path) -> dict[str, Path]:
    """Return every regular file under `directory` by its relative POSIX path."""
    return {path.relative_to(directory).as_posix(): path for path in directory.rglob("*") if path.is_file()}


def corpus_files(prefix: Path) -> dict[str, Path]:
    """Return the two files of a memory-mapped corpus, `<prefix>.bin` and `<prefix>.idx`, by file name."""
    return {prefix.name + suffix: prefix.with_name(prefix.name + suffix) for suffix in MMAP_SUFFIXES}


def check_digest(label: str, where: Path, entries: list[dict[str, str]], pinned: str | None, pack: RulePack,
                 name_files: bool = False) -> dict[str, Any]:
    """Compare the manifest digest with the pack's; return the record for run.json and config.json.

    With `name_files`, a mismatch message lists the files the digest covers,
    since one digest cannot tell which of them changed.
    """
    digest = manifest_sha256(entries)
    if pinned is None:
        logger.warning(_("{label} at {path} is not pinned in draft rule pack {pack}; its digest is {digest}").format(
            label=label, path=where, pack=pack.name, digest=digest))
    elif digest != pinned:
        if name_files:
            message = _("{label} at {path}: the digest of {files} is {digest}, but rule pack {pack} expects {expected}").format(
                label=label, path=where, files=" + ".join(entry["path"] for entry in entries), digest=digest, pack=pack.name, expected=pinned)
        else:
            message = _("{label} at {path} has digest {digest}, but rule pack {pack} expects {expected}").format(
                label=label, path=where, digest=digest, pack=pack.name, expected=pinned)
        raise AgentError("data_checksum_mismatch", message,
                         _("restore the original files; the digest covers every file (see docs/training.md, 'Released checkpoints')"))
    return {"path": str(where.resolve()), "sha256": digest, "pinned": pinned is not None, "files": entries}


# Checkpoints -------------------------------------------------------------------------------------


def checkpoint_folder(pack: RulePack, model: str, data_root: Path, folders: dict[str, Path]) -> Path:
    """Return the folder of a model's checkpoint: the vendor's `--checkpoint`, else the pack's path under the data root."""
    if model in folders:
        return Path(folders[model])
    return data_root / pack.data["models"][model]["checkpoint"]["path"]


def tokenizer_in_checkpoint(pack: RulePack, model: str) -> PurePosixPath | None:
    """Return the model's tokenizer path relative to its checkpoint folder, or None when the pack puts it elsewhere.

    An SD pipeline folder has its tokenizer in `tokenizer/`, so a `--checkpoint`
    folder brings its own tokenizer, which the pack's digest still pins.
    """
    checkpoint = pack.data["models"][model].get("checkpoint")
    tokenizer = PurePosixPath(pack.data["tokenizers"][pack.data["models"][model]["tokenizer"]]["path"])
    if checkpoint is None or not tokenizer.is_relative_to(checkpoint["path"]):
        return None
    return tokenizer.relative_to(checkpoint["path"])


def check_checkpoint_folders(pack: RulePack, workload_ids: list[str], folders: dict[str, Path]) -> None:
    """Reject a `--checkpoint MODEL=DIR` whose model no planned workload starts from."""
    used = sorted({pack.checkpoint_model(workload_id) for workload_id in workload_ids} - {None})
    for model in folders:
        if model not in used:
            raise AgentError("checkpoint_not_used", _("--checkpoint names model {model}, but no planned workload of rule pack {pack} starts from its checkpoint").format(
                                 model=repr(model), pack=pack.name),
                             _("name one of: {names}").format(names=", ".join(used)) if used else _("this plan loads no checkpoint; drop --checkpoint"))


def check_checkpoint_degrees(pack: RulePack, workload_ids: list[str], data_root: Path, folders: dict[str, Path],
                             overrides: dict[str, Any]) -> None:
    """Reject a folder of per-rank tensor-parallel weight files that a planned workload would load under another degree or in pipeline stages.

    It reads only the folder's file names and config.json, so start_run
    calls it before any input is hashed or the run folder is written. A
    missing folder is left to verify_checkpoint, which reports it.
    """
    for workload_id in workload_ids:
        model = pack.checkpoint_model(workload_id)
        if model is None or pack.data["models"][model]["architecture"] == SD_ARCHITECTURE:
            continue
        directory = checkpoint_folder(pack, model, data_root, folders)
        if not directory.is_dir():
            continue
        label = describe_input(f"checkpoint {model}")
        weights = check_weight_files(label, directory, config=read_checkpoint_config(model, directory))
        saved = weights.get("tensor_parallel_degree")
        degree, settable = loading_degree(pack, workload_id, overrides)
        pipeline_degree = loading_degree(pack, workload_id, overrides, "pipeline_parallel_degree")[0]
        if saved is None or (saved == degree and pipeline_degree == 1):
            continue
        if saved == degree:
            # PaddleNLP 3.0.0b4's from_pretrained looks for files of rank and stage under pipeline parallelism.
            raise AgentError("checkpoint_parallel_mismatch",
                             _("{workload}: {label} at {path} is saved as per-rank files of tensor_parallel_degree {saved}, "
                               "which PaddleNLP does not load under pipeline_parallel_degree {pipeline}").format(
                                 workload=workload_id, label=label, path=directory, saved=saved, pipeline=pipeline_degree),
                             _("run with --set pipeline_parallel_degree=1, or pass --checkpoint {model}=DIR with a folder whose ranks are merged "
                               "into one model (see docs/training.md, 'Released checkpoints')").format(model=model))
        if settable:
            hint = _("run with --set tensor_parallel_degree={saved} on a multiple of {saved} processes, or pass --checkpoint {model}=DIR "
                     "with a folder whose ranks are merged into one model (see docs/training.md, 'Released checkpoints')").format(saved=saved, model=model)
        else:
            hint = _("pass --checkpoint {model}=DIR with a folder whose ranks are merged into one model, which loads under any degree "
                     "(see docs/training.md, 'Released checkpoints')").format(model=model)
        raise AgentError("checkpoint_parallel_mismatch",
                         _("{workload}: {label} at {path} is saved as per-rank files of tensor_parallel_degree {saved}, "
                           "but the workload loads it with tensor_parallel_degree {degree}").format(
                             workload=workload_id, label=label, path=directory, saved=saved, degree=degree),
                         hint)


def loading_degree(pack: RulePack, workload_id: str, overrides: dict[str, Any], key: str = "tensor_parallel_degree") -> tuple[int, bool]:
    """Return the degree `key` a workload loads its checkpoint with, and whether `--set` may change it.

    The Trainer's kinds split the model by the pack's free
    tensor_parallel_degree and pipeline_parallel_degree with the `--set`
    values applied (agent.workloads.training.parallel_arguments). The
    inference kind loads the model in one process.
    """
    spec = pack.workload(workload_id)
    free = spec["hyperparameters"].get("free") or {}
    if spec["kind"] not in TRAINER_KINDS or key not in free:
        return 1, False
    return max(int(overrides.get(key, free[key])), 1), True


def verify_checkpoint(pack: RulePack, model: str, directory: Path) -> dict[str, Any]:
    """Check a model's checkpoint folder: files, digest and configs against the pack. Return its record.

    A language model's folder is what PaddleNLP's save_pretrained writes. The
    record's `config` is its config.json, and `weights` names the weight files
    that from_pretrained loads and the dtypes they store (agent.runner.weights).
    An SD model's folder is what
    ppdiffusers' StableDiffusionPipeline.save_pretrained writes, and the
    record's `config` contains its model_index.json and the part configs.
    """
    label = describe_input(f"checkpoint {model}")
    if not directory.is_dir():
        raise AgentError("checkpoint_missing", _("{label} is missing: no folder at {path}").format(label=label, path=directory),
                         _("copy the released checkpoint there, pass --data-root, or pass --checkpoint MODEL=DIR"))
    weights = None
    if pack.data["models"][model]["architecture"] == SD_ARCHITECTURE:
        saved = read_sd_configs(label, directory)
        check_sd_configs(pack, model, saved)
    else:
        saved = read_checkpoint_config(model, directory)
        check_checkpoint_config(pack, model, saved)
        weights = check_weight_files(label, directory, config=saved)
    record = check_digest(label, directory, manifest(folder_files(directory)), pack.data["models"][model]["checkpoint"].get("sha256"), pack)
    record["config"] = saved
    if weights is not None:
        # After the digest, so that a changed weight file is reported as a digest mismatch.
        weights["stored_dtypes"], weights["stored_dtypes_from"] = stored_dtypes(label, directory, weights["files"], saved)
        record["weights"] = weights
    return record


def read_checkpoint_config(model: str, directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise AgentError("checkpoint_incomplete", _("checkpoint of model {model} at {path} has no {name}").format(model=model, path=directory, name=CONFIG_NAME),
                         _("copy the whole checkpoint folder, as save_pretrained wrote it"))
    return _read_json(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AgentError("checkpoint_incomplete", _("{path} is not valid JSON: {error}").format(path=path, error=error),
                         _("copy the checkpoint's {name} again").format(name=path.name)) from None


def read_sd_configs(label: str, directory: Path) -> dict[str, Any]:
    """Check an SD folder's layout and return its model_index.json and part configs, keyed like the pack's SD config."""
    if not (directory / SD_INDEX_NAME).is_file():
        raise AgentError("checkpoint_incomplete", _("{label} at {path} has no {name}").format(label=label, path=directory, name=SD_INDEX_NAME),
                         _("copy the whole folder, as StableDiffusionPipeline.save_pretrained wrote it"))
    for subfolder, names in SD_REQUIRED_FILES.items():
        if not (directory / subfolder).is_dir():
            raise AgentError("checkpoint_incomplete", _("{label} at {path} has no {subfolder}/ subfolder").format(label=label, path=directory, subfolder=subfolder),
                             _("copy the whole folder, as StableDiffusionPipeline.save_pretrained wrote it"))
        for name in names:
            if not (directory / subfolder / name).is_file():
                raise AgentError("checkpoint_incomplete", _("{label} at {path}: {subfolder}/ has no {name}").format(
                                     label=label, path=directory, subfolder=subfolder, name=name),
                                 _("restore the file from the checkpoint's release"))
    for subfolder, formats in SD_WEIGHTS.items():
        check_weight_files(label, directory / subfolder, formats)
    configs = {"model_index": _read_json(directory / SD_INDEX_NAME)}
    configs.update({section: _read_json(directory / name) for section, name in SD_CONFIG_FILES.items()})
    check_config_keys(label, directory, {name: configs[section] for section, name in SD_CONFIG_FILES.items()})
    return configs


def check_sd_configs(pack: RulePack, model: str, saved: dict[str, Any]) -> None:
    """Reject an SD folder whose part configs contradict a value that the pack's `config` fixes (per part, such as unet.sample_size)."""
    for section, values in pack.data["models"][model]["config"].items():
        if section not in SD_CONFIG_FILES:
            raise AgentError("checkpoint_config_mismatch", _("model {model} of rule pack {pack} has config section {section}, which no part of a checkpoint has").format(
                                 model=model, pack=pack.name, section=repr(section)),
                             _("use the sections {names}").format(names=", ".join(SD_CONFIG_FILES)))
        for key, value in values.items():
            found = saved[section].get(key)
            # JSON round trip, so that a YAML list and the config's list compare equal.
            if json.loads(json.dumps(value)) != found:
                raise AgentError("checkpoint_config_mismatch",
                                 _("the checkpoint of model {model} has {key}={found} in {file}, but rule pack {pack} fixes {section}.{key}={value}").format(
                                     model=model, key=key, found=repr(found), file=SD_CONFIG_FILES[section], pack=pack.name, section=section, value=repr(value)),
                                 _("use the checkpoint the pack's 'source' names"))


def check_checkpoint_config(pack: RulePack, model: str, saved: dict[str, Any]) -> None:
    """Reject a checkpoint whose config.json contradicts the architecture or a config value the pack fixes."""
    preset = pack.data["models"][model]
    architectures = saved.get("architectures")
    if architectures and preset["architecture"] not in architectures:
        raise AgentError("checkpoint_config_mismatch",
                         _("the checkpoint of model {model} is a {found}, but rule pack {pack} names architecture {architecture}").format(
                             model=model, found=", ".join(architectures), pack=pack.name, architecture=preset["architecture"]),
                         _("use the checkpoint the pack's 'source' names"))
    for key, value in preset["config"].items():
        if key in saved and saved[key] != value:
            raise AgentError("checkpoint_config_mismatch",
                             _("the checkpoint of model {model} has {key}={found} in config.json, but rule pack {pack} fixes {key}={value}").format(
                                 model=model, key=key, found=repr(saved[key]), pack=pack.name, value=repr(value)),
                             _("use the checkpoint the pack's 'source' names; its config.json must agree with models.{model}.config").format(model=model))


# Pre-tokenized corpora ---------------------------------------------------------------------------


def verify_corpus(pack: RulePack, name: str, prefix: Path) -> dict[str, Any]:
    """Check both files of a memory-mapped corpus and their digest. Return its record."""
    files = corpus_files(prefix)
    for path in files.values():
        if not path.is_file():
            raise AgentError("data_missing", _("dataset {name} is missing: no file at {path}").format(name=name, path=path),
                             _("a {format} corpus is two files, {prefix}.bin and {prefix}.idx; restore them or pass --data-root").format(
                                 format=MMAP_FORMAT, prefix=prefix))
    return check_digest(describe_input(f"dataset {name}"), prefix, manifest(files), pack.data["datasets"][name]["sha256"], pack)


# Tokenizers of kind bpe --------------------------------------------------------------------------


def bpe_files(vocabulary: Path) -> dict[str, Path]:
    """Return the two files of a `bpe` tokenizer by file name: the pack's vocab.json and the merges.txt beside it."""
    return {vocabulary.name: vocabulary, BPE_MERGES: vocabulary.with_name(BPE_MERGES)}


def verify_bpe_tokenizer(pack: RulePack, label: str, vocabulary: Path, pinned: str | None) -> dict[str, Any]:
    """Check both files of a `bpe` tokenizer and their manifest digest. Return its record.

    The merges decide how text splits into tokens as much as the vocabulary
    does, so the pack's digest covers both: `sha256sum merges.txt vocab.json | sha256sum`
    in their folder.
    """
    files = bpe_files(vocabulary)
    for path in files.values():
        if not path.is_file():
            raise AgentError("data_missing", _("{label} is missing: no file at {path}").format(label=label, path=path),
                             _("a 'bpe' tokenizer is two files in one folder, {vocabulary} and {merges}; restore them or pass --data-root").format(
                                 vocabulary=vocabulary.name, merges=BPE_MERGES))
    return check_digest(label, vocabulary, manifest(files), pinned, pack, name_files=True)
