"""Loading rule packs: the standard as versioned YAML data."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from certification.errors import os_error_details
from certification.kind_hyperparameters import hyperparameter_problem, training_length_problem
from certification.rulepack_schema import SchemaErrorLocations, schema_problem

RULEPACK_DIR = Path(__file__).parent / "rulepacks"
# Pack name -> sha256 of every published pack's bytes. A published pack never
# changes: tests and validation fail when its bytes no longer match this pin.
PUBLISHED_PINS_PATH = RULEPACK_DIR / "published.json"


class RulePackError(ValueError):
    """A rule pack that cannot be found, read or parsed, with a stable `code` and a `hint`.

    `values` contains the parts of the English message and hint by name, so that a caller can show them
    in another language.
    """

    def __init__(self, code: str, message: str, hint: str = "", values: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.hint = hint
        self.values = values or {}


@dataclass(frozen=True)
class RulePack:
    """One parsed rule pack; `sha256` is the hash of the file's exact bytes."""

    name: str
    sha256: str
    data: dict[str, Any]
    text: str

    @property
    def reference_kind(self) -> str:
        return self.data["reference_kind"]

    def workload(self, workload_id: str) -> dict[str, Any]:
        return self.data["workloads"][workload_id]

    def interpretation(self, name: str) -> Any:
        """Return the value of the named interpretation setting (`settings.interpretations.<name>.value`)."""
        return self.data["settings"]["interpretations"][name]["value"]

    def model_name(self, workload_id: str) -> str:
        """Return the model key of a workload; a `model_setting` resolves through the named interpretation."""
        spec = self.workload(workload_id)
        if "model_setting" in spec:
            return self.interpretation(spec["model_setting"])
        return spec["model"]

    def checkpoint_model(self, workload_id: str) -> str | None:
        """Return the model whose released checkpoint a workload reads, or None.

        A workload without `init_from` starts from the checkpoint of its model
        when the model has one (`models.<name>.checkpoint`). An SD workload
        reads its model's checkpoint with `init_from` too, because the part
        configs and the noise schedule come from it.
        """
        spec = self.workload(workload_id)
        if spec["kind"] not in CHECKPOINT_KINDS or (spec.get("init_from") and spec["kind"] not in SD_KINDS):
            return None
        model = self.model_name(workload_id)
        return model if "checkpoint" in self.data["models"][model] else None


# Workload kinds that can start from a model's released checkpoint, and those among them whose
# checkpoint is a ppdiffusers pipeline folder rather than a PaddleNLP model folder.
SD_KINDS = ("sd_sft", "sd_infer")
CHECKPOINT_KINDS = ("pretrain", "sft", "lora", "infer", *SD_KINDS)


def available_rule_packs() -> list[str]:
    return sorted(path.stem for path in RULEPACK_DIR.glob("*.yaml"))


def parse_rule_pack(raw: bytes) -> RulePack:
    """Parse rule pack bytes; the name comes from its `id` and `version`.

    Raises RulePackError for bytes that are not UTF-8, not YAML, or have no `id` and `version`.
    """
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise RulePackError("rule_pack_invalid", _not_utf8_message(raw, error), "save the rule pack as UTF-8",
                            {"byte": f"0x{raw[error.start]:02x}", "offset": str(error.start)}) from None
    except yaml.YAMLError as error:
        raise RulePackError("rule_pack_invalid", _yaml_error_message(error), "fix the YAML at that line and column",
                            _yaml_error_values(error)) from None
    if not isinstance(data, dict) or "id" not in data or "version" not in data:
        raise RulePackError("rule_pack_invalid", "the rule pack has no 'id' and 'version' at its top level", "",
                            {"keys": "id, version"})
    return RulePack(
        name=f"{data['id']}-{data['version']}",
        sha256=hashlib.sha256(raw).hexdigest(),
        data=data,
        text=raw.decode("utf-8"),
    )


def rule_pack_path(name: str) -> Path:
    """Return the file of the shipped rule pack `name`, such as `demo-2026.1`, whether or not it exists."""
    return RULEPACK_DIR / f"{name}.yaml"


def load_rule_pack(name: str) -> RulePack:
    """Load a shipped rule pack by name, such as `demo-2026.1`."""
    path = rule_pack_path(name)
    if not path.is_file():
        known = ", ".join(available_rule_packs()) or "none"
        raise RulePackError(
            "rule_pack_not_found",
            f"rule pack {name!r} not found in {RULEPACK_DIR}",
            f"use one of: {known}",
            {"name": repr(name), "folder": str(RULEPACK_DIR), "known": known},
        )
    return parse_rule_pack(path.read_bytes())


# Validation ------------------------------------------------------------------

SCHEMA_PATH = Path(__file__).parent / "schema" / "rulepack.schema.json"


@dataclass(frozen=True)
class RulePackIssue:
    """One problem in a rule pack: the path to the value (such as `workloads/sft-llama/model`) and what is wrong.

    Every problem also has a stable `code` and the parts of the message as `values` (a tuple of name and
    value pairs), so that a caller can show it in another language.
    """

    path: str
    message: str
    code: str = ""
    values: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def published_pins() -> dict[str, str]:
    """Return the pinned sha256 of every published pack, by pack name."""
    if not PUBLISHED_PINS_PATH.is_file():
        return {}
    return json.loads(PUBLISHED_PINS_PATH.read_text(encoding="utf-8"))["packs"]


def validate_rule_pack_file(path: Path) -> list[RulePackIssue]:
    """Validate a rule pack file: YAML syntax, schema, cross-references, file name and the published pin.

    `python -m agent validate-pack` and the portal's `validate_pack` command
    both call this. Raises RulePackError when the file cannot be read.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        details = os_error_details(error)
        raise RulePackError("rule_pack_unreadable", f"cannot read {path}: {details['reason']}", "check the path",
                            {"path": str(path), **details}) from None
    if _looks_like_pem(raw):
        # Nothing of the file is quoted: it may be a private key.
        return [RulePackIssue("(file)", "the file looks like a PEM key or certificate, not a rule pack; pass the rule pack's YAML file",
                              "file_is_pem", ())]
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        return [RulePackIssue("(file)", _not_utf8_message(raw, error) + "; save the file as UTF-8", "file_not_utf8",
                              (("byte", f"0x{raw[error.start]:02x}"), ("offset", str(error.start))))]
    except yaml.YAMLError as error:
        return [RulePackIssue("(file)", _yaml_error_message(error), "yaml_invalid", tuple(_yaml_error_values(error).items()))]
    if not isinstance(data, dict):
        return [_not_a_mapping_issue(data)]
    issues = validate_rule_pack(data)
    if "id" in data and "version" in data:
        issues.extend(_file_issues(Path(path).name, f"{data['id']}-{data['version']}", data.get("status"), hashlib.sha256(raw).hexdigest()))
    return issues


def _looks_like_pem(raw: bytes) -> bool:
    """True for text with a PEM boundary line (RFC 7468), such as `-----BEGIN PRIVATE KEY-----`, or the words PRIVATE KEY."""
    return b"-----BEGIN " in raw or b"PRIVATE KEY" in raw


def _not_utf8_message(raw: bytes, error: UnicodeDecodeError) -> str:
    return f"not UTF-8 text: byte 0x{raw[error.start]:02x} at offset {error.start} is invalid"


def _yaml_error_message(error: yaml.YAMLError) -> str:
    """Describe a YAML syntax error with the 1-based line and column where PyYAML found it."""
    values = _yaml_error_values(error)
    if "line" not in values:
        return f"invalid YAML: {values['problem']}"
    return f"invalid YAML at line {values['line']}, column {values['column']}: {values['problem']}"


def _yaml_error_values(error: yaml.YAMLError) -> dict[str, str]:
    """Return PyYAML's English description of a syntax error and, where PyYAML marks it, its 1-based line and column.

    `problem` joins PyYAML's problem and context texts. `yaml_problem`, `yaml_context` and the context's
    `context_line` and `context_column` keep them apart, so that a translation can replace each one.
    """
    problem = getattr(error, "problem", None) or str(error)
    values = {"yaml_problem": problem}
    context = getattr(error, "context", None)
    if context:
        # Such as "while parsing a flow sequence", which started where context_mark points.
        context_mark = getattr(error, "context_mark", None)
        problem += f" ({context}{_yaml_position(context_mark, ' that starts at')})"
        values["yaml_context"] = context
        if context_mark is not None:
            values.update(context_line=str(context_mark.line + 1), context_column=str(context_mark.column + 1))
    values["problem"] = problem
    mark = getattr(error, "problem_mark", None)
    if mark is not None:
        values.update(line=str(mark.line + 1), column=str(mark.column + 1))
    return values


def _yaml_position(mark: Any, preposition: str) -> str:
    return f"{preposition} line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


# YAML types of a top level that is not a mapping, by Python type, as the messages name them.
TOP_LEVEL_KINDS = {str: "string", list: "list", int: "number", float: "number", bool: "boolean"}


def _not_a_mapping_issue(data: Any) -> RulePackIssue:
    """Describe a file that parses as YAML but whose top level is not a mapping, as plain text or a list does."""
    expected = "a rule pack is a YAML mapping with the keys schema, id, version, status, tracks and others"
    if data is None:
        return RulePackIssue("(file)", f"the file is empty or only comments; {expected}", "file_empty")
    # The file's content is not quoted, because a file passed by mistake may hold a password or token.
    kind = TOP_LEVEL_KINDS.get(type(data), type(data).__name__)
    article = "an" if kind[0] in "aeiou" else "a"
    return RulePackIssue("(file)", f"the file parses as YAML, but its top level is {article} {kind}, not a mapping; {expected}",
                         "top_level_not_mapping", (("kind", kind),))


def _file_issues(file_name: str, name: str, status: Any, sha256: str) -> list[RulePackIssue]:
    issues = []
    if file_name != f"{name}.yaml":
        issues.append(RulePackIssue("(file name)", f"the file is named {file_name}, but its id and version make the pack {name}; "
                                                   f"rename the file to {name}.yaml, or change id and version",
                                    "file_name_mismatch", (("file_name", file_name), ("name", name))))
    pinned = published_pins().get(name)
    if pinned is not None and pinned != sha256:
        issues.append(RulePackIssue("(file)", f"published pack {name} is pinned at sha256 {pinned}, but these bytes hash to {sha256}; a published pack never changes, so publish the change as a new version",
                                    "published_pack_changed", (("name", name), ("pinned", pinned), ("sha256", sha256))))
    if status == "published" and pinned is None:
        issues.append(RulePackIssue("status", f"pack {name} is published but has no pin in {PUBLISHED_PINS_PATH.name}; add its sha256 there when publishing",
                                    "published_pack_unpinned", (("name", name), ("pins_file", PUBLISHED_PINS_PATH.name))))
    return issues


def validate_rule_pack(data: Any) -> list[RulePackIssue]:
    """Return every schema and cross-reference problem in parsed rule pack data; an empty list means valid.

    The cross-reference checks skip the parts that have schema errors, so one pass reports both kinds
    of problem wherever the parts a check reads are well-formed.
    """
    normalized = _string_keys(data)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    errors = list(validator.iter_errors(normalized))
    issues = [_schema_issue(error) for error in errors]
    issues.extend(_reference_issues(normalized, SchemaErrorLocations(normalized, errors)))
    return sorted(issues, key=lambda issue: issue.path)


def _schema_issue(error: jsonschema.ValidationError) -> RulePackIssue:
    code, values = schema_problem(error)
    return RulePackIssue(_path(error.absolute_path), error.message, code, tuple(values.items()))


def _issue(path: str, code: str, message: str, **values: Any) -> RulePackIssue:
    """Build a cross-reference problem whose `values` are the parts of its English `message`, as strings."""
    return RulePackIssue(path, message, code, tuple((name, str(value)) for name, value in values.items()))


def _string_keys(value: Any) -> Any:
    """Return `value` with mapping keys as strings, because YAML reads level keys such as `1:` as integers."""
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


def _path(parts: Any) -> str:
    return "/".join(str(part) for part in parts) or "(top level)"


# The dataset roles each workload kind reads whatever its criteria are.
REQUIRED_DATASET_ROLES = {
    "pretrain": ("train", "validation", "lambada"),
    "sft": ("train", "eval"),
    "lora": ("train", "eval"),
    "infer": ("prompts",),
    "sd_sft": ("train", "prompts"),
    "sd_infer": ("prompts",),
}


def dataset_names(names: str | list[str] | None) -> list[str]:
    """Return a workload's dataset role as a list: the schema allows one name or a list of names."""
    if names is None:
        return []
    return [names] if isinstance(names, str) else list(names)


def _reference_issues(data: Any, shape: SchemaErrorLocations) -> list[RulePackIssue]:
    """Check that every name a pack uses is defined in it and that the settings agree with each other.

    Each check runs only where `shape` finds the parts it reads well-formed, so that it never meets a
    value of the wrong type or a missing key.
    """
    if not shape.named_mappings(("workloads",), ("tracks",), ("models",), ("datasets",)):
        return []
    issues = []
    interpretations_clean = shape.clean(("settings", "interpretations"))
    workloads = {workload_id: workload for workload_id, workload in data["workloads"].items()
                 if shape.clean(("workloads", workload_id)) and (interpretations_clean or "model_setting" not in workload)}
    for workload_id, workload in workloads.items():
        issues.extend(_workload_issues(data, workload_id, workload))
    issues.extend(_init_from_cycle_issues(workloads))
    tracks = {track_name: track for track_name, track in data["tracks"].items() if shape.clean(("tracks", track_name))}
    for track_name, track in tracks.items():
        issues.extend(_track_issues(data, track_name, track))
        issues.extend(_level_gap_issues(track_name, track))
        issues.extend(_required_level_issues(tracks, track_name, track))
    if shape.clean(("settings", "loss_alignment"), ("settings", "throughput")):
        issues.extend(_settings_issues(data["settings"]))
    if shape.clean(("status",), ("datasets",), ("tokenizers",), ("models",)):
        issues.extend(_unset_digest_issues(data))
    if interpretations_clean:
        issues.extend(_sft_only_issues(data, workloads))
    issues.extend(_duplicate_criterion_issues({workload_id: workload for workload_id, workload in data["workloads"].items()
                                               if shape.clean(("workloads", workload_id, "criteria"))}))
    return issues


def _workload_issues(data: dict, workload_id: str, workload: dict) -> list[RulePackIssue]:
    where = f"workloads/{workload_id}"
    issues = []
    if "model" in workload and workload["model"] not in data["models"]:
        issues.append(_issue(f"{where}/model", "unknown_model", f"unknown model {workload['model']!r}", model=workload["model"]))
    if "model_setting" in workload:
        issues.extend(_model_setting_issues(data, where, workload["model_setting"]))
    if "init_from" in workload and workload["init_from"] not in data["workloads"]:
        issues.append(_issue(f"{where}/init_from", "unknown_workload", f"unknown workload {workload['init_from']!r}", workload=workload["init_from"]))
    for role, names in workload["datasets"].items():
        for name in dataset_names(names):
            if name not in data["datasets"]:
                issues.append(_issue(f"{where}/datasets/{role}", "unknown_dataset", f"unknown dataset {name!r}", dataset=name))
    for role in REQUIRED_DATASET_ROLES[workload["kind"]]:
        if role not in workload["datasets"]:
            issues.append(_issue(f"{where}/datasets/{role}", "dataset_role_missing", f"a {workload['kind']} workload reads a {role} dataset: name one here",
                                 workload_kind=workload["kind"], role=role))
    lambada_criteria = [criterion["id"] for criterion in workload["criteria"] if criterion["metric"] == "lambada_accuracy_difference"]
    if lambada_criteria and "lambada" not in workload["datasets"]:
        issues.append(_issue(f"{where}/datasets/lambada", "lambada_dataset_missing",
                             f"criterion {lambada_criteria[0]} measures LAMBADA accuracy: name the lambada dataset here", criterion=lambada_criteria[0]))
    issues.extend(_corpus_issues(data, where, workload))
    model = _selected_model(data, workload)
    if workload["kind"] in ("sft", "lora") and not workload.get("init_from") and "checkpoint" not in data["models"].get(model, {"checkpoint": None}):
        issues.append(_issue(f"{where}/init_from", "init_from_missing",
                             f"a {workload['kind']} workload needs init_from or a model with a checkpoint, and model {model!r} has none",
                             workload_kind=workload["kind"], model=model))
    issues.extend(_calibration_issues(where, workload))
    issues.extend(_hyperparameter_issues(workload_id, workload))
    overlap = set(workload["hyperparameters"]["fixed"]) & set(workload["hyperparameters"].get("free", {}))
    if overlap:
        keys = ", ".join(sorted(overlap))
        issues.append(_issue(f"{where}/hyperparameters", "hyperparameter_fixed_and_free", f"both fixed and free: {keys}", keys=keys))
    return issues


def _calibration_issues(where: str, workload: dict) -> list[RulePackIssue]:
    """Report an A8W8 workload without a calibration set."""
    issues = []
    if workload.get("data_type") == "a8w8" and not workload["datasets"].get("calibration"):
        issues.append(_issue(f"{where}/datasets/calibration", "calibration_missing", "an a8w8 workload needs a calibration set for its PTQ "
                             "calibration: name a dataset of {\"src\": ...} lines under datasets.calibration"))
    return issues


def _hyperparameter_issues(workload_id: str, workload: dict) -> list[RulePackIssue]:
    """Report each fixed or free hyperparameter that the workload's kind does not read, reads from the other
    section or cannot run with, and a training length that is missing or set twice.

    certification.kind_hyperparameters lists the keys of each kind, and certification.hyperparameters the
    types and ranges of the values.
    """
    issues = []
    for section in ("fixed", "free"):
        for key, value in (workload["hyperparameters"].get(section) or {}).items():
            problem = hyperparameter_problem(workload_id, workload["kind"], key, value, _yaml_scalar_text(value), section)
            if problem is not None:
                issues.append(RulePackIssue(f"workloads/{workload_id}/hyperparameters/{section}/{key}",
                                            problem.message, problem.code, problem.values))
    length = training_length_problem(workload_id, workload["kind"], workload["hyperparameters"]["fixed"])
    if length is not None:
        issues.append(RulePackIssue(f"workloads/{workload_id}/hyperparameters/fixed", length.message, length.code, length.values))
    return issues


def _yaml_scalar_text(value: Any) -> str:
    """Return a value as the pack writes it, with strings in double quotes so that "200" differs from 200."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).removesuffix("\n...\n").strip()


def _corpus_issues(data: dict, where: str, workload: dict) -> list[RulePackIssue]:
    """Report a pre-tokenized corpus (format paddlenlp_mmap) used other than as the one train set of a pretrain workload."""
    issues = []
    for role, names in workload["datasets"].items():
        names = dataset_names(names)
        corpora = [name for name in names if data["datasets"].get(name, {}).get("format") == "paddlenlp_mmap"]
        if corpora and (workload["kind"] != "pretrain" or role != "train" or len(names) > 1):
            issues.append(_issue(f"{where}/datasets/{role}", "corpus_not_pretrain_train",
                                 f"pre-tokenized corpus {corpora[0]!r} can only be the one train set of a pretrain workload", dataset=corpora[0]))
    return issues


def _model_setting_issues(data: dict, where: str, setting: str) -> list[RulePackIssue]:
    interpretation = data["settings"].get("interpretations", {}).get(setting)
    if interpretation is None:
        return [_issue(f"{where}/model_setting", "unknown_interpretation", f"unknown interpretation setting {setting!r}", setting=setting)]
    choices = [interpretation["value"], *interpretation.get("options", [])]
    # A choice that is not a string, such as a list, names no model.
    unknown = [choice for choice in choices if not isinstance(choice, str) or choice not in data["models"]]
    if unknown:
        models = ", ".join(map(str, unknown))
        return [_issue(f"settings/interpretations/{setting}", "interpretation_unknown_models", f"names models that the pack does not define: {models}", models=models)]
    if interpretation.get("options") and interpretation["value"] not in interpretation["options"]:
        return [_issue(f"settings/interpretations/{setting}/value", "interpretation_value_not_option",
                       f"{interpretation['value']!r} is not one of the options", value=interpretation["value"])]
    return []


def _unset_digest_issues(data: dict) -> list[RulePackIssue]:
    """A digest may stay unset (null) only while the pack is a draft: staff fix it before publishing."""
    if data["status"] == "draft":
        return []
    issues = []
    for section in ("datasets", "tokenizers"):
        for name, record in (data.get(section) or {}).items():
            if record.get("sha256") is None:
                issues.append(_issue(f"{section}/{name}/sha256", "digest_unset",
                                     f"unset digest in a {data['status']} pack; set the file's sha256 or keep the pack a draft", status=data["status"]))
    for name, model in data["models"].items():
        if "checkpoint" in model and model["checkpoint"].get("sha256") is None:
            issues.append(_issue(f"models/{name}/checkpoint/sha256", "checkpoint_digest_unset",
                                 f"unset digest in a {data['status']} pack; set the checkpoint's manifest digest or keep the pack a draft", status=data["status"]))
    return issues


def _sft_only_issues(data: dict, workloads: dict) -> list[RulePackIssue]:
    """Models named by the `sft_only_models` interpretation may appear only in sft, sd_sft and inference `workloads`."""
    interpretation = data["settings"].get("interpretations", {}).get("sft_only_models")
    if interpretation is None:
        return []
    sft_only = set(interpretation["value"])
    issues = []
    for workload_id, workload in workloads.items():
        model = _selected_model(data, workload)
        if model in sft_only and workload["kind"] in ("pretrain", "lora"):
            issues.append(_issue(f"workloads/{workload_id}/kind", "sft_only_model",
                                 f"model {model!r} is SFT only (settings/interpretations/sft_only_models), so it cannot have a {workload['kind']} workload",
                                 model=model, workload_kind=workload["kind"]))
    return issues


def _selected_model(data: dict, workload: dict) -> str | None:
    """Return the model a workload uses: its `model`, or the value of the interpretation its `model_setting` names.

    Returns None when that value is not a string, which _model_setting_issues reports.
    """
    if "model_setting" in workload:
        value = data["settings"].get("interpretations", {}).get(workload["model_setting"], {}).get("value")
        return value if isinstance(value, str) else None
    return workload.get("model")


def _track_issues(data: dict, track_name: str, track: dict) -> list[RulePackIssue]:
    issues = []
    required = track.get("requires_track")
    if required is not None and (required not in data["tracks"] or required == track_name):
        issues.append(_issue(f"tracks/{track_name}/requires_track", "unknown_required_track", f"unknown or circular track {required!r}", track=required))
    for level, spec in (track.get("levels") or {}).items():
        for workload_id in spec["workloads"]:
            if workload_id not in data["workloads"]:
                issues.append(_issue(f"tracks/{track_name}/levels/{level}/workloads", "unknown_workload", f"unknown workload {workload_id!r}", workload=workload_id))
    return issues


def _init_from_cycle_issues(workloads: dict) -> list[RulePackIssue]:
    """Report each init_from chain that leads back to a workload it passed, once per loop, at its first workload in pack order.

    No run can plan such a workload, because each workload must start after the one it names.
    """
    issues = []
    reported: set[str] = set()
    for workload_id in workloads:
        chain = [workload_id]
        parent = workloads[workload_id].get("init_from")
        while parent in workloads and parent not in chain:
            chain.append(parent)
            parent = workloads[parent].get("init_from")
        if parent != workload_id or workload_id in reported:
            continue
        reported.update(chain)
        loop = " -> ".join([*chain, workload_id])
        issues.append(_issue(f"workloads/{workload_id}/init_from", "init_from_cycle",
                             f"workload {workload_id!r} starts from itself through init_from: {loop}", workload=workload_id, chain=loop))
    return issues


def _level_gap_issues(track_name: str, track: dict) -> list[RulePackIssue]:
    """Report each level below a track's highest that the track does not define.

    Levels are cumulative (level N needs levels 1 to N), so no run can reach a missing level, and the agent rejects a run planned at it.
    """
    levels = sorted(int(level) for level in track.get("levels") or {})
    if not levels:
        return []
    defined = ", ".join(map(str, levels))
    return [_issue(f"tracks/{track_name}/levels", "level_missing",
                   f"track {track_name!r} defines levels {defined} but not level {level}; define every level from 1 to {levels[-1]}",
                   track=track_name, levels=defined, level=level, highest=levels[-1])
            for level in range(1, levels[-1]) if level not in levels]


def _required_level_issues(tracks: dict, track_name: str, track: dict) -> list[RulePackIssue]:
    """Report each level of a track that its `requires_track` does not define, because a run of the track plans both at the same level."""
    required = track.get("requires_track")
    if required not in tracks or required == track_name:
        return []
    required_levels = {int(level) for level in tracks[required].get("levels") or {}}
    return [_issue(f"tracks/{track_name}/levels/{level}", "required_track_level_missing",
                   f"track {track_name!r} requires track {required!r} at the same level, but {required!r} has no level {level}",
                   track=track_name, required_track=required, level=level)
            for level in sorted(int(level) for level in track.get("levels") or {}) if level not in required_levels]


def _settings_issues(settings: dict) -> list[RulePackIssue]:
    issues = []
    loss = settings["loss_alignment"]
    if loss["steps"] % loss["window"]:
        issues.append(_issue("settings/loss_alignment/steps", "loss_steps_not_windows", f"{loss['steps']} steps do not split into windows of {loss['window']}",
                             steps=loss["steps"], window=loss["window"]))
    first, last = settings["throughput"]["mean_steps"]
    if first > last:
        issues.append(_issue("settings/throughput/mean_steps", "mean_steps_reversed", f"first step {first} is after last step {last}", first=first, last=last))
    return issues


def _duplicate_criterion_issues(workloads: dict) -> list[RulePackIssue]:
    seen: dict[str, str] = {}
    issues = []
    for workload_id, workload in workloads.items():
        for index, item in enumerate(workload["criteria"]):
            if item["id"] in seen:
                issues.append(_issue(f"workloads/{workload_id}/criteria/{index}/id", "criterion_id_duplicate",
                                     f"criterion id {item['id']!r} is also used by {seen[item['id']]}", criterion=item["id"], workload=seen[item["id"]]))
            seen.setdefault(item["id"], workload_id)
    return issues
