"""The inputs of a workload on both sides of a comparison: data sets, corpora, tokenizer and checkpoint.

A loss curve or a ROUGE score compared with a reference means something only
when both runs read the same files. The agent records the digest of every
input it read in two places: in run.json `inputs` (the digest it computed, labelled
`dataset NAME`, `tokenizer NAME` or `checkpoint MODEL`) and in the workload's
config.json (`datasets` records, `tokenizer`, `model.checkpoint`). The
computed digest in run.json is preferred; config.json's is used when run.json
has none, as in bundles made before run.json recorded inputs.

`compare_inputs` lists each input of one workload with the digest of each
side and the digest the rule pack pins, and `input_outcome` turns the
disagreements into the outcome that replaces every criterion that compares
the two runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from certification.criteria import FAIL, REFUSED, Outcome, RecordsInvalid, WorkloadRecords, problem_zh
from certification.errors import BundleError
from certification.rulepack import RulePack, dataset_names
from certification.verdict_messages import bundle_error_zh

EQUAL, DIFFERENT, OFF_PIN = "equal", "different", "off_pin"
VENDOR_ONLY, REFERENCE_ONLY, NOT_RECORDED = "vendor_only", "reference_only", "not_recorded"
DIGEST_PROBLEMS = (DIFFERENT, OFF_PIN)
# Names of each kind of input in explanations, by language.
KIND_NAMES = {
    "dataset": {"zh": "数据集", "en": "dataset"},
    "corpus": {"zh": "预分词语料", "en": "pre-tokenized corpus"},
    "tokenizer": {"zh": "分词器", "en": "tokenizer"},
    "checkpoint": {"zh": "检查点", "en": "checkpoint"},
}
CORPUS_FORMAT = "paddlenlp_mmap"


class InputRecordsInvalid(RecordsInvalid):
    """The input records of one side (`vendor` or `reference`) are unreadable or contradict each other."""

    def __init__(self, side: str, problem: str, problem_zh: str | None = None):
        super().__init__(problem, problem_zh)
        self.side = side


@dataclass(frozen=True)
class InputDigests:
    """One input of a workload: its label, the digest each run recorded, the pack's pin and how they relate."""

    label: str
    kind: str
    name: str
    named_by_pack: bool
    vendor: str | None
    reference: str | None
    pinned: str | None
    status: str

    @property
    def vendor_at_fault(self) -> bool:
        """True when the vendor's own record is wrong.

        That is a missing digest of an input the pack names, a digest of an
        input the pack does not name for the workload, or a digest other than
        the pack's pin.
        """
        if self.vendor is None:
            return self.named_by_pack
        if not self.named_by_pack:
            return True
        return self.pinned is not None and self.vendor != self.pinned

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.label, "kind": self.kind, "name": self.name, "named_by_pack": self.named_by_pack,
            "vendor": self.vendor, "reference": self.reference, "pinned": self.pinned, "status": self.status,
        }


def compare_inputs(pack: RulePack, workload_id: str, vendor: WorkloadRecords, reference: WorkloadRecords) -> list[InputDigests]:
    """Return every input of the workload, sorted by label, with both sides' digests and the pack's pin.

    The inputs are those the pack names for the workload and those either
    config.json records, so an input that only one run read is listed too.
    Raise InputRecordsInvalid, naming the side, when a side's config.json or
    run.json cannot be read or the two disagree on a digest.
    """
    vendor_digests, reference_digests = _side_digests("vendor", vendor), _side_digests("reference", reference)
    named = set(pack_inputs(pack, workload_id))
    labels = named | set(_config_digests(vendor.config)) | set(_config_digests(reference.config))
    entries = []
    for label in sorted(labels):
        kind, name = _kind_and_name(pack, label)
        vendor_digest, reference_digest = vendor_digests.get(label), reference_digests.get(label)
        pinned = pinned_digest(pack, label) if label in named else None
        status = _status(vendor_digest, reference_digest, pinned)
        entries.append(InputDigests(label, kind, name, label in named, vendor_digest, reference_digest, pinned, status))
    return entries


def pack_inputs(pack: RulePack, workload_id: str) -> list[str]:
    """Return the labels of the inputs the pack names for a workload, as the agent labels them in run.json."""
    spec = pack.workload(workload_id)
    labels = [f"dataset {name}" for names in spec.get("datasets", {}).values() for name in dataset_names(names)]
    labels.append(f"tokenizer {pack.data['models'][pack.model_name(workload_id)]['tokenizer']}")
    model = pack.checkpoint_model(workload_id)
    if model is not None:
        labels.append(f"checkpoint {model}")
    return labels


def pinned_digest(pack: RulePack, label: str) -> str | None:
    """Return the digest the pack pins for an input label, or None when the pack does not pin it or lacks it."""
    kind, _, name = label.partition(" ")
    if kind == "dataset":
        entry = pack.data.get("datasets", {}).get(name) or {}
    elif kind == "tokenizer":
        entry = pack.data.get("tokenizers", {}).get(name) or {}
    elif kind == "checkpoint":
        entry = (pack.data.get("models", {}).get(name) or {}).get("checkpoint") or {}
    else:
        entry = {}
    return _digest(entry.get("sha256"))


def _side_digests(side: str, records: WorkloadRecords) -> dict[str, str]:
    try:
        return recorded_digests(records)
    except (RecordsInvalid, BundleError) as error:
        raise InputRecordsInvalid(side, str(error), problem_zh(error)) from error


def recorded_digests(records: WorkloadRecords) -> dict[str, str]:
    """Return {label: digest} for one side: run.json `inputs` where it has a digest, else config.json.

    Raise RecordsInvalid when run.json and config.json record different
    digests for one input, because then the bundle contradicts itself.
    """
    configured = {label: digest for label, digest in _config_digests(records.config).items() if digest is not None}
    computed = _run_digests(records)
    for label in sorted(set(configured) & set(computed)):
        if configured[label] != computed[label]:
            raise RecordsInvalid(f"{label} has sha256 {computed[label]} in run.json `inputs` but {configured[label]} in "
                                 f"{records.prefix}config.json",
                                 f"{label} 在 run.json 的 `inputs` 中的 sha256 为 {computed[label]}，"
                                 f"在 {records.prefix}config.json 中为 {configured[label]}")
    return {**configured, **computed}


def _run_digests(records: WorkloadRecords) -> dict[str, str]:
    if not records.bundle.has("run.json"):
        return {}
    try:
        run = records.bundle.read_json("run.json")
    except BundleError as error:
        raise RecordsInvalid(f"run.json cannot be read: {error}", f"无法读取 run.json：{bundle_error_zh(error)}") from error
    inputs = run.get("inputs") if isinstance(run, dict) else None
    if inputs is None:
        return {}
    if not isinstance(inputs, dict) or not all(isinstance(record, dict) for record in inputs.values()):
        raise RecordsInvalid("run.json `inputs` is invalid: expected an object of {label: {path, sha256, ...}} records",
                             "run.json 的 `inputs` 无效：应为 {label: {path, sha256, ...}} 形式的记录对象")
    return {label: _digest(record.get("sha256")) for label, record in inputs.items() if _digest(record.get("sha256"))}


def _config_digests(config: Any) -> dict[str, str | None]:
    """Return {label: digest or None} of the dataset, tokenizer and checkpoint records in a config.json."""
    if not isinstance(config, dict):
        raise RecordsInvalid("config.json is not an object", "config.json 不是 JSON 对象")
    digests: dict[str, str | None] = {}
    for record in _records_under(config.get("datasets")):
        if isinstance(record.get("name"), str) and "sha256" in record:
            digests[f"dataset {record['name']}"] = _digest(record["sha256"])
    tokenizer = config.get("tokenizer")
    if isinstance(tokenizer, dict) and isinstance(tokenizer.get("name"), str):
        digests[f"tokenizer {tokenizer['name']}"] = _digest(tokenizer.get("sha256"))
    model = config.get("model")
    checkpoint = model.get("checkpoint") if isinstance(model, dict) else None
    if isinstance(checkpoint, dict) and isinstance(model.get("name"), str):
        digests[f"checkpoint {model['name']}"] = _digest(checkpoint.get("sha256"))
    return digests


def _records_under(value: Any):
    """Yield every dict under `value`, at any depth: a dataset role contains one record or a list of them."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _records_under(child)
    elif isinstance(value, list):
        for child in value:
            yield from _records_under(child)


def _digest(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


def _kind_and_name(pack: RulePack, label: str) -> tuple[str, str]:
    """Split a label into its kind and name; a data set in the pre-tokenized format is a corpus."""
    kind, _, name = label.partition(" ")
    if kind == "dataset" and (pack.data.get("datasets", {}).get(name) or {}).get("format") == CORPUS_FORMAT:
        return "corpus", name
    return kind, name


def _status(vendor: str | None, reference: str | None, pinned: str | None) -> str:
    if vendor is None and reference is None:
        return NOT_RECORDED
    if reference is None:
        return VENDOR_ONLY
    if vendor is None:
        return REFERENCE_ONLY
    if vendor != reference:
        return DIFFERENT
    if pinned is not None and vendor != pinned:
        return OFF_PIN
    return EQUAL


# The outcome of the comparison -----------------------------------------------


def input_outcome(entries: list[InputDigests], workload_id: str) -> Outcome | None:
    """Return the outcome for every criterion that compares the runs, or None when all inputs are equal.

    The status is `fail` when the vendor's own records are at fault (see
    InputDigests.vendor_at_fault), because the vendor must run again.
    Otherwise it is `refused`, because the reference or an unpinned draft
    pack is the cause and staff must act. The code is `input_digest_mismatch`
    when any two digests differ, else `input_not_recorded`.
    """
    problems = [entry for entry in entries if entry.status != EQUAL]
    if not problems:
        return None
    status = FAIL if any(entry.vendor_at_fault for entry in problems) else REFUSED
    code = "input_digest_mismatch" if any(entry.status in DIGEST_PROBLEMS for entry in problems) else "input_not_recorded"
    fields = {
        "workload": workload_id,
        "inputs_zh": "；".join(_describe(entry, "zh") for entry in problems),
        "inputs_en": "; ".join(_describe(entry, "en") for entry in problems),
    }
    return Outcome(status, code, fields=fields, details={"inputs": [entry.to_dict() for entry in problems]})


# Per language: the template of each problem, with the input's kind and name, both digests and the pin.
DESCRIPTIONS = {
    "zh": {
        DIFFERENT: "{kind} {name}：厂商 sha256 {vendor}，参考 sha256 {reference}",
        OFF_PIN: "{kind} {name}：双方 sha256 均为 {vendor}，规则包固定为 {pinned}",
        VENDOR_ONLY: "{kind} {name}：厂商 sha256 {vendor}，参考运行未记录",
        REFERENCE_ONLY: "{kind} {name}：厂商运行未记录，参考 sha256 {reference}",
        NOT_RECORDED: "{kind} {name}：双方运行均未记录",
        "pinned": "（规则包固定为 {pinned}）",
    },
    "en": {
        DIFFERENT: "{kind} {name}: vendor sha256 {vendor}, reference sha256 {reference}",
        OFF_PIN: "{kind} {name}: both runs have sha256 {vendor}, but the rule pack pins {pinned}",
        VENDOR_ONLY: "{kind} {name}: vendor sha256 {vendor}, not recorded by the reference run",
        REFERENCE_ONLY: "{kind} {name}: not recorded by the vendor run, reference sha256 {reference}",
        NOT_RECORDED: "{kind} {name}: recorded by neither run",
        "pinned": " (the rule pack pins {pinned})",
    },
}


def _describe(entry: InputDigests, language: str) -> str:
    templates = DESCRIPTIONS[language]
    values = {"kind": KIND_NAMES[entry.kind][language], "name": entry.name, "vendor": entry.vendor,
              "reference": entry.reference, "pinned": entry.pinned}
    text = templates[entry.status].format(**values)
    if entry.pinned is not None and entry.status in (DIFFERENT, VENDOR_ONLY, REFERENCE_ONLY):
        text += templates["pinned"].format(**values)
    return text
