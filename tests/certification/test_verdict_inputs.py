"""Input digests: the verdict compares the data sets, corpora, tokenizer and checkpoint that both runs read."""

import json

import pytest

from certification.bundle import open_bundle, write_bundle
from certification.verdict import Reference, judge
from tests.certification.runfolder import PACK, build_run
from tests.certification.test_verdict import KEY, KEYRING, PEAKS, edited_pack, status_and_code

FINETUNING = ("sft-llama", "lora-llama")
PRETRAIN_INPUTS = {
    "dataset lambada", "dataset pretrain_c4", "dataset pretrain_shakespeare", "dataset pretrain_zh",
    "dataset validation_wiki", "tokenizer llama2",
}
LAMBADA_PIN = PACK.data["datasets"]["lambada"]["sha256"]
OTHER = "a" * 64


def set_digest(run_dir, label, digest):
    """Record `digest` for one input in run.json `inputs` and in every config.json record of it, as a run that read such a file would."""
    run = json.loads((run_dir / "run.json").read_text())
    if digest is None:
        run["inputs"].pop(label, None)
    else:
        run["inputs"][label] = {**run["inputs"].get(label, {"path": "/data/x"}), "sha256": digest}
    (run_dir / "run.json").write_text(json.dumps(run))
    kind, _, name = label.partition(" ")
    for config_path in run_dir.glob("workloads/*/config.json"):
        config = json.loads(config_path.read_text())
        for record in config_records(config, kind, name):
            record["sha256"] = digest
        config_path.write_text(json.dumps(config))


def config_records(config, kind, name):
    if kind == "tokenizer" and config["tokenizer"]["name"] == name:
        return [config["tokenizer"]]
    if kind == "checkpoint" and config["model"]["name"] == name and "checkpoint" in config["model"]:
        return [config["model"]["checkpoint"]]
    if kind != "dataset":
        return []
    found = []
    for records in config["datasets"].values():
        found.extend(record for record in (records if isinstance(records, list) else [records]) if record["name"] == name)
    return found


def bundle_with(folder, digests=None, pack=PACK, **options):
    run_dir = build_run(folder / "run", pack=pack, **options)
    for label, digest in (digests or {}).items():
        set_digest(run_dir, label, digest)
    return open_bundle(write_bundle(run_dir, folder / "run.tar", KEY).path, KEYRING)


def judged(tmp_path, vendor_digests=None, reference_digests=None, pack=PACK):
    reference = bundle_with(tmp_path / "reference", reference_digests, pack)
    vendor = bundle_with(tmp_path / "vendor", vendor_digests, pack)
    return judge(vendor, [Reference(reference, PEAKS)], pack, PEAKS)


def entries(verdict, workload_id="pretrain-llama"):
    return {entry["input"]: entry for entry in verdict.inputs[workload_id]["inputs"]}


def test_matching_inputs_listed_as_checked(tmp_path):
    verdict = judged(tmp_path)

    listed = entries(verdict)
    assert set(listed) == PRETRAIN_INPUTS
    for label, entry in listed.items():
        assert entry["status"] == "equal", label
        assert entry["vendor"] == entry["reference"] == entry["pinned"], label
        assert entry["named_by_pack"], label
    assert listed["dataset lambada"]["pinned"] == LAMBADA_PIN
    assert status_and_code(verdict, "pretrain.lambada") == ("pass", "lambada_pass")
    assert verdict.to_dict()["inputs"]["pretrain-llama"]["reference_bundle_id"] == verdict.reference_bundle_ids[0]


def test_vendor_off_pin_fails(tmp_path):
    verdict = judged(tmp_path, vendor_digests={"dataset lambada": OTHER})

    result = verdict.criterion("pretrain.lambada")
    assert (result.status, result.details["code"]) == ("fail", "input_digest_mismatch")
    for language in ("en", "zh"):
        assert "lambada" in result.explanation[language]
        assert OTHER in result.explanation[language]
        assert LAMBADA_PIN in result.explanation[language]
        assert "{" not in result.explanation[language]
    assert result.details["inputs"] == [entries(verdict)["dataset lambada"]]
    assert entries(verdict)["dataset lambada"]["status"] == "different"


def test_mismatch_blocks_only_comparisons(tmp_path):
    verdict = judged(tmp_path, vendor_digests={"dataset lambada": OTHER})

    for criterion_id in ("pretrain.loss_alignment", "pretrain.validation_loss", "pretrain.throughput"):
        assert status_and_code(verdict, criterion_id) == ("fail", "input_digest_mismatch")
    assert status_and_code(verdict, "pretrain-llama.fixed_hyperparameters") == ("pass", "fixed_hyperparameters_pass")
    assert status_and_code(verdict, "sft.rouge") == ("pass", "rouge_pass")
    assert verdict.tracks["pretraining"]["level"] == 0
    assert verdict.failed


def test_reference_off_pin_refused(tmp_path):
    verdict = judged(tmp_path, reference_digests={"dataset lambada": OTHER})

    assert status_and_code(verdict, "pretrain.lambada") == ("refused", "input_digest_mismatch")
    assert entries(verdict)["dataset lambada"]["reference"] == OTHER


def test_both_off_pin_fail(tmp_path):
    verdict = judged(tmp_path, vendor_digests={"dataset lambada": OTHER}, reference_digests={"dataset lambada": OTHER})

    assert status_and_code(verdict, "pretrain.lambada") == ("fail", "input_digest_mismatch")
    assert entries(verdict)["dataset lambada"]["status"] == "off_pin"


def draft_pack():
    def edit(data):
        data["status"] = "draft"
        data["datasets"]["lambada"]["sha256"] = None

    return edited_pack(edit)


@pytest.mark.parametrize(
    ("vendor", "reference", "status", "code"),
    [
        ("b" * 64, "b" * 64, "pass", "lambada_pass"),
        ("b" * 64, "c" * 64, "refused", "input_digest_mismatch"),
        (None, "c" * 64, "fail", "input_not_recorded"),
        ("b" * 64, None, "refused", "input_not_recorded"),
        (None, None, "fail", "input_not_recorded"),
    ],
)
def test_draft_pack_compares_computed_digests(tmp_path, vendor, reference, status, code):
    # A draft pack pins no digest, so only the digests the runs computed (run.json `inputs`) can be compared.
    pack = draft_pack()

    verdict = judged(tmp_path, {"dataset lambada": vendor}, {"dataset lambada": reference}, pack)

    assert status_and_code(verdict, "pretrain.lambada") == (status, code)
    assert entries(verdict)["dataset lambada"]["pinned"] is None


def test_vendor_without_record_fails(tmp_path):
    verdict = judged(tmp_path, vendor_digests={"tokenizer llama2": None})

    result = verdict.criterion("pretrain.lambada")
    assert (result.status, result.details["code"]) == ("fail", "input_not_recorded")
    for language in ("en", "zh"):
        assert "llama2" in result.explanation[language]
        assert "{" not in result.explanation[language]
        assert result.hint[language]
    assert entries(verdict)["tokenizer llama2"]["status"] == "reference_only"


def test_reference_without_record_refused(tmp_path):
    verdict = judged(tmp_path, reference_digests={"tokenizer llama2": None})

    assert status_and_code(verdict, "pretrain.lambada") == ("refused", "input_not_recorded")
    assert entries(verdict)["tokenizer llama2"]["status"] == "vendor_only"


def test_input_outside_pack_fails(tmp_path):
    run_dir = build_run(tmp_path / "vendor")
    config_path = run_dir / "workloads/pretrain-llama/config.json"
    config = json.loads(config_path.read_text())
    config["datasets"]["train"].append({"name": "private_corpus", "path": "private.txt", "sha256": "d" * 64})
    config_path.write_text(json.dumps(config))
    vendor = open_bundle(write_bundle(run_dir, tmp_path / "vendor.tar", KEY).path, KEYRING)
    reference = bundle_with(tmp_path / "reference")

    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)

    assert status_and_code(verdict, "pretrain.lambada") == ("fail", "input_not_recorded")
    extra = entries(verdict)["dataset private_corpus"]
    assert (extra["status"], extra["named_by_pack"], extra["vendor"]) == ("vendor_only", False, "d" * 64)


def checkpoint_pack():
    def edit(data):
        data["models"]["llama-tiny"]["checkpoint"] = {"path": "checkpoints/llama-tiny", "sha256": "e" * 64}
        data["datasets"]["pretrain_c4"]["format"] = "paddlenlp_mmap"

    return edited_pack(edit)


def test_checkpoint_and_corpus_compared(tmp_path):
    pack = checkpoint_pack()

    verdict = judged(tmp_path, vendor_digests={"checkpoint llama-tiny": OTHER}, pack=pack)

    listed = entries(verdict)
    assert (listed["checkpoint llama-tiny"]["kind"], listed["checkpoint llama-tiny"]["status"]) == ("checkpoint", "different")
    assert (listed["dataset pretrain_c4"]["kind"], listed["dataset pretrain_c4"]["status"]) == ("corpus", "equal")
    result = verdict.criterion("pretrain.lambada")
    assert (result.status, result.details["code"]) == ("fail", "input_digest_mismatch")
    assert "checkpoint llama-tiny" in result.explanation["en"]
    assert "checkpoint llama-tiny" not in entries(verdict, "sft-llama")  # fine-tuning starts from the pretrain run, not the release


def test_contradicting_records(tmp_path):
    # run.json `inputs` names one digest and config.json another: the bundle contradicts itself.
    contradicting = {"inputs": {"dataset lambada": {"path": "/data/x", "sha256": OTHER}}}
    reference = bundle_with(tmp_path / "reference")
    vendor = bundle_with(tmp_path / "vendor", **contradicting)
    broken_reference = bundle_with(tmp_path / "broken", **contradicting)

    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)
    assert status_and_code(verdict, "pretrain.lambada") == ("fail", "records_invalid")
    assert OTHER in verdict.criterion("pretrain.lambada").explanation["en"]

    verdict = judge(reference, [Reference(broken_reference, PEAKS)], PACK, PEAKS)
    assert status_and_code(verdict, "pretrain.lambada") == ("refused", "reference_unusable")


def test_carried_workload_keeps_its_inputs(tmp_path):
    reference = bundle_with(tmp_path / "reference")
    pretraining = bundle_with(tmp_path / "a", workloads=("pretrain-llama",))
    earlier = judge(pretraining, [Reference(reference, PEAKS)], PACK, PEAKS).to_dict()
    later = bundle_with(tmp_path / "b", workloads=FINETUNING)

    verdict = judge(later, [Reference(reference, PEAKS)], PACK, PEAKS, carried=[earlier])

    assert verdict.inputs["pretrain-llama"] == earlier["inputs"]["pretrain-llama"]
    assert set(verdict.inputs) >= {"pretrain-llama", "sft-llama", "lora-llama"}
