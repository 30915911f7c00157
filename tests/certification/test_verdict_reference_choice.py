"""Several references of a pack contain a workload: the verdict prefers one whose inputs equal the vendor's and records which it used."""

from certification.verdict import Reference, judge
from tests.certification.runfolder import PACK
from tests.certification.test_verdict import PEAKS, status_and_code
from tests.certification.test_verdict_inputs import OTHER, bundle_with

WORKLOAD = "pretrain-llama"


def references(tmp_path, *options):
    """Build one reference bundle per options dict, in order; each dict contains bundle_with's keyword arguments."""
    return [Reference(bundle_with(tmp_path / f"reference-{number}", **option), PEAKS) for number, option in enumerate(options)]


def judged(tmp_path, reference_list, vendor_digests=None):
    vendor = bundle_with(tmp_path / "vendor", vendor_digests)
    return judge(vendor, reference_list, PACK, PEAKS)


def compared(verdict, workload_id=WORKLOAD):
    return verdict.to_dict()["inputs"][workload_id]


def test_only_reference_used_even_when_inputs_differ(tmp_path):
    (reference,) = references(tmp_path, {"digests": {"dataset lambada": OTHER}})

    verdict = judged(tmp_path, [reference])

    choice = compared(verdict)["reference_choice"]
    assert choice["code"] == "only_reference"
    assert choice["candidates"] == [reference.bundle.bundle_id]
    assert compared(verdict)["reference_bundle_id"] == reference.bundle.bundle_id
    assert status_and_code(verdict, "pretrain.lambada") == ("refused", "input_digest_mismatch")
    assert reference.bundle.bundle_id in choice["explanation"]["en"]
    assert reference.bundle.bundle_id in choice["explanation"]["zh"]


def test_matching_reference_preferred_over_first(tmp_path):
    off_pin, matching = references(tmp_path, {"digests": {"dataset lambada": OTHER}}, {})

    verdict = judged(tmp_path, [off_pin, matching])

    choice = compared(verdict)["reference_choice"]
    assert compared(verdict)["reference_bundle_id"] == matching.bundle.bundle_id
    assert choice["code"] == "inputs_match"
    assert choice["candidates"] == [off_pin.bundle.bundle_id, matching.bundle.bundle_id]
    assert status_and_code(verdict, "pretrain.lambada") == ("pass", "lambada_pass")
    assert "2 reference bundles" in choice["explanation"]["en"]
    assert matching.bundle.bundle_id in choice["explanation"]["zh"]


def test_first_matching_reference_wins(tmp_path):
    first, second = references(tmp_path, {}, {})

    verdict = judged(tmp_path, [first, second])

    assert compared(verdict)["reference_bundle_id"] == first.bundle.bundle_id
    assert compared(verdict)["reference_choice"]["code"] == "inputs_match"


def test_vendor_off_pin_matches_no_reference(tmp_path):
    first, second = references(tmp_path, {}, {"digests": {"dataset lambada": OTHER}})

    # The vendor read the same file as the second reference, but neither equals the pack's pin, so no reference matches.
    verdict = judged(tmp_path, [first, second], vendor_digests={"dataset lambada": OTHER})

    choice = compared(verdict)["reference_choice"]
    assert choice["code"] == "no_inputs_match"
    assert compared(verdict)["reference_bundle_id"] == first.bundle.bundle_id
    assert status_and_code(verdict, "pretrain.lambada") == ("fail", "input_digest_mismatch")


def test_unusable_reference_skipped(tmp_path):
    failed, different = references(tmp_path, {"status": "failed"}, {"digests": {"dataset lambada": OTHER}})

    verdict = judged(tmp_path, [failed, different])

    choice = compared(verdict)["reference_choice"]
    assert choice["code"] == "no_inputs_match"
    assert compared(verdict)["reference_bundle_id"] == different.bundle.bundle_id
    assert status_and_code(verdict, "pretrain.lambada") == ("refused", "input_digest_mismatch")


def test_all_references_unusable_blocks(tmp_path):
    first, second = references(tmp_path, {"status": "failed"}, {"status": "failed"})

    verdict = judged(tmp_path, [first, second])

    assert status_and_code(verdict, "pretrain.lambada") == ("refused", "reference_unusable")
    assert first.bundle.bundle_id in verdict.criterion("pretrain.lambada").explanation["en"]
    assert WORKLOAD not in verdict.inputs


def test_reference_choice_per_workload(tmp_path):
    # The second reference contains only the pretraining workload, so fine-tuning has a single candidate.
    full, pretraining_only = references(
        tmp_path, {"digests": {"dataset lambada": OTHER}}, {"workloads": ("pretrain-llama",)},
    )

    verdict = judged(tmp_path, [full, pretraining_only])

    assert compared(verdict)["reference_bundle_id"] == pretraining_only.bundle.bundle_id
    assert compared(verdict, "sft-llama")["reference_choice"]["code"] == "only_reference"
    assert compared(verdict, "sft-llama")["reference_bundle_id"] == full.bundle.bundle_id
