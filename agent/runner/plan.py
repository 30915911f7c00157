"""Planning: which workloads a set of tracks and a level need, in an order that respects init_from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from certification.rulepack import RulePack

from agent.errors import AgentError
from agent.i18n import _
from agent.runner import checkpoints
from agent.runner.checkpoints import sha256_file
from agent.runner.sd_inputs import check_image_folder

logger = logging.getLogger(__name__)


def plan_workloads(pack: RulePack, tracks: list[str], level: int, only: list[str] | None = None) -> list[str]:
    """Return the workload ids that `tracks` at `level` require, each after the workload it starts from.

    Levels are cumulative (level N needs the levels the pack defines up to N),
    a track's `requires_track` adds that track at the same level, and a
    workload's `init_from` is planned even when no track names it. `level`
    itself must be one the pack defines for every track. `only` keeps the
    named workloads of that plan (with what they start from) and drops the rest.
    """
    wanted: list[str] = []
    for track in _with_required_tracks(pack, tracks):
        levels = _track_levels(pack, track, level)
        for number in sorted(number for number in levels if number <= level):
            for workload_id in levels[number].get("workloads", []):
                _append_with_parents(pack, workload_id, wanted, [])
    return wanted if only is None else _keep_only(pack, wanted, only)


def _keep_only(pack: RulePack, planned: list[str], only: list[str]) -> list[str]:
    unknown = [workload_id for workload_id in only if workload_id not in planned]
    if unknown:
        raise AgentError("workload_not_planned", _("workloads {names} are not part of this plan of rule pack {pack}").format(
                             names=", ".join(unknown), pack=pack.name),
                         _("name workloads of the profile's tracks and level: {names}").format(names=", ".join(planned)))
    kept: list[str] = []
    for workload_id in only:
        _append_with_parents(pack, workload_id, kept, [])
    return [workload_id for workload_id in planned if workload_id in kept]


def _with_required_tracks(pack: RulePack, tracks: list[str]) -> list[str]:
    ordered: list[str] = []
    pending = list(tracks)
    while pending:
        track = pending.pop(0)
        if track in ordered:
            continue
        entry = pack.data["tracks"].get(track)
        if entry is None:
            raise AgentError("track_not_found", _("track {track} is not in rule pack {pack}").format(track=repr(track), pack=pack.name),
                             _("use one of: {names}").format(names=", ".join(pack.data["tracks"])))
        ordered.append(track)
        if entry.get("requires_track"):
            pending.append(entry["requires_track"])
    return ordered


def _track_levels(pack: RulePack, track: str, level: int) -> dict:
    """Return the levels of `track` by number, raising AgentError when `level` is not one of them."""
    levels = pack.data["tracks"][track].get("levels") or {}
    if level not in levels:
        defined = ", ".join(str(number) for number in sorted(levels)) or _("none")
        raise AgentError("level_not_defined", _("track {track} has no level {level} in rule pack {pack}").format(
                             track=repr(track), level=level, pack=pack.name),
                         _("choose a level the pack defines for {track}: {levels}").format(track=track, levels=defined))
    return levels


def _append_with_parents(pack: RulePack, workload_id: str, wanted: list[str], chain: list[str]) -> None:
    if workload_id in wanted:
        return
    if workload_id in chain:
        raise AgentError("rule_pack_invalid", _("workload {workload} starts from itself through init_from").format(workload=repr(workload_id)),
                         _("fix the init_from entries of the rule pack"))
    spec = pack.data["workloads"].get(workload_id)
    if spec is None:
        raise AgentError("rule_pack_invalid", _("workload {workload} is named by a track but not defined").format(workload=repr(workload_id)),
                         _("add it to the 'workloads' section of {pack}").format(pack=pack.name))
    if spec.get("init_from"):
        _append_with_parents(pack, spec["init_from"], wanted, [*chain, workload_id])
    wanted.append(workload_id)


def input_files(pack: RulePack, workload_ids: list[str]) -> dict[str, dict]:
    """Return the pack entries of every dataset and tokenizer the planned workloads read."""
    files: dict[str, dict] = {}
    for workload_id in workload_ids:
        spec = pack.data["workloads"][workload_id]
        for names in spec.get("datasets", {}).values():
            for name in [names] if isinstance(names, str) else names:
                files[f"dataset {name}"] = pack.data["datasets"][name]
        tokenizer = pack.data["models"][pack.model_name(workload_id)]["tokenizer"]
        files[f"tokenizer {tokenizer}"] = pack.data["tokenizers"][tokenizer]
    return files


def moved_tokenizers(pack: RulePack, workload_ids: list[str], data_root: Path, folders: dict[str, Path]) -> dict[str, Path]:
    """Return the tokenizer files that lie in the checkpoint folder in use rather than at the pack's path, by label."""
    moved = {}
    for model in {pack.checkpoint_model(workload_id) for workload_id in workload_ids} - {None}:
        relative = checkpoints.tokenizer_in_checkpoint(pack, model)
        if relative is not None:
            folder = checkpoints.checkpoint_folder(pack, model, data_root, folders)
            moved[f"tokenizer {pack.data['models'][model]['tokenizer']}"] = folder / relative
    return moved


def check_data_root(pack: RulePack, workload_ids: list[str], data_root: Path) -> None:
    """Raise `data_root_missing` when --data-root is not an existing folder, before any input path under it is named."""
    if data_root.is_dir():
        return
    if data_root.exists():
        message = _("data root {path} is not a folder").format(path=data_root)
    else:
        message = _("data root {path} does not exist").format(path=data_root)
    relative = next((entry["path"] for entry in input_files(pack, workload_ids).values()), "data/")
    raise AgentError("data_root_missing", message,
                     _("pass as --data-root the folder that contains the rule pack's data paths, such as {relative}").format(relative=relative))


def _data_root_hint(data_root: Path, relative: str) -> str:
    """Say which data root was used and what it should contain, and name its parent when the root is one level too deep."""
    top = Path(relative).parts[0]
    if data_root.name == top and (data_root.parent / relative).exists():
        return _("--data-root is {root}, which is the {top} folder itself; pass its parent: --data-root {parent}").format(
            root=data_root, top=top, parent=data_root.parent)
    return _("the rule pack's paths are relative to --data-root, which is {root}, so it must contain {relative}; "
             "restore the file from the release, or pass the folder that contains it").format(root=data_root, relative=relative)


def verify_input_files(pack: RulePack, workload_ids: list[str], data_root: Path,
                       checkpoint_folders: dict[str, Path] | None = None) -> dict[str, dict[str, Any]]:
    """Check each input's digest against the pack before anything trains; return the records by label.

    Files have their sha256, and a pre-tokenized corpus (`format:
    paddlenlp_mmap`), a `bpe` tokenizer (vocab.json + merges.txt), a folder
    (such as an SD image folder) and a model's released checkpoint have the
    digest of their manifest
    (agent.runner.checkpoints). A null digest, which only a draft pack may
    hold, is computed and recorded with `pinned: false`.
    """
    records: dict[str, dict[str, Any]] = {}
    moved = moved_tokenizers(pack, workload_ids, data_root, checkpoint_folders or {})
    for label, entry in input_files(pack, workload_ids).items():
        path = moved.get(label, data_root / entry["path"])
        described = checkpoints.describe_input(label)
        logger.info(_("checking the digest of {label} at {path}").format(label=described, path=path))
        if entry.get("kind") == "bpe":
            records[label] = checkpoints.verify_bpe_tokenizer(pack, described, path, entry["sha256"])
            continue
        if entry.get("format") == checkpoints.MMAP_FORMAT:
            records[label] = checkpoints.verify_corpus(pack, label.removeprefix("dataset "), path)
            continue
        if path.is_dir():
            # An image folder for SD fine-tuning has the digest of its manifest, as a checkpoint folder has.
            files = checkpoints.manifest(checkpoints.folder_files(path))
            records[label] = checkpoints.check_digest(described, path, files, entry["sha256"], pack)
            check_image_folder(described, path)
            continue
        if not path.is_file():
            raise AgentError("data_missing", _("{label} is missing: no file at {path}").format(label=described, path=path),
                             _("restore the file in the checkpoint folder {folder}").format(folder=path.parent) if label in moved
                             else _data_root_hint(data_root, entry["path"]))
        digest = sha256_file(path)
        if entry["sha256"] is None:
            logger.warning(_("{label} at {path} is not pinned in draft rule pack {pack}; its sha256 is {digest}").format(
                label=described, path=path, pack=pack.name, digest=digest))
        elif digest != entry["sha256"]:
            raise AgentError(
                "data_checksum_mismatch",
                _("{label} at {path} has sha256 {digest}, but rule pack {pack} expects {expected}").format(
                    label=described, path=path, digest=digest, pack=pack.name, expected=entry["sha256"]),
                _("restore the original file; certification runs only on the data the pack names"),
            )
        records[label] = {"path": str(path), "sha256": digest, "pinned": entry["sha256"] is not None}
    for model in sorted({pack.checkpoint_model(workload_id) for workload_id in workload_ids} - {None}):
        folder = checkpoints.checkpoint_folder(pack, model, data_root, checkpoint_folders or {})
        logger.info(_("checking the digest of {label} at {path}").format(label=checkpoints.describe_input(f"checkpoint {model}"), path=folder))
        records[f"checkpoint {model}"] = checkpoints.verify_checkpoint(pack, model, folder)
    return records
