"""The validation pipeline in eager mode, with real signed bundles."""

import importlib.util

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import translation

from portal.audit.models import AuditEntry
from portal.submissions import pipeline
from portal.submissions.models import ReferenceBundle, Submission
from portal.submissions.services import add_reference, receive_bundle

from .conftest import build_bundle, upload_file, vendor_with_key

pytest.importorskip("certification.bundle")

HAS_VERDICT_ENGINE = importlib.util.find_spec("certification.verdict") is not None


class FakeVerdict:
    def __init__(self, payload):
        self.payload = payload

    def to_dict(self):
        return self.payload


@pytest.fixture
def reference(tmp_path, rule_pack, lab_key):
    path = build_bundle(tmp_path, lab_key, name="reference.tar", vendor="reference-lab", model="CPU", serial="ref-0")
    reference, _created = add_reference(path, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})
    return reference


@pytest.fixture
def recorded_judge(monkeypatch):
    """Replace the verdict engine with one that records its inputs and grants pretraining level 1."""
    calls = []

    def judge(bundle, references, pack, card_peaks, human=None):
        calls.append({"bundle": bundle, "references": references, "pack": pack, "card_peaks": card_peaks})
        return FakeVerdict({
            "rule_pack": {"name": pack.name, "sha256": pack.sha256}, "reference_kind": pack.reference_kind,
            "criteria": [], "tracks": {"pretraining": {"level": 1, "gap": []}},
        })

    monkeypatch.setattr(pipeline, "load_judge", lambda: judge)
    return calls


def submit(path, vendor, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        submission, created = receive_bundle(vendor=vendor, upload=upload_file(path.read_bytes()), actor=owner)
    assert created
    submission.refresh_from_db()
    return submission


def actions_of(submission):
    entries = AuditEntry.objects.filter(object_type="submissions.submission", object_id=str(submission.pk))
    return sorted(entries.values_list("action", flat=True))


def test_good_bundle_is_judged(tmp_path, vendor, owner, card, vendor_key, reference, recorded_judge, django_capture_on_commit_callbacks):
    path = build_bundle(tmp_path, vendor_key)
    submission = submit(path, vendor, owner, django_capture_on_commit_callbacks)

    assert submission.state == "judged"
    assert submission.card == card
    assert submission.rule_pack.name == "demo-2026.1"
    assert submission.report.track_level("pretraining") == 1
    assert recorded_judge[0]["card_peaks"] == {"fp32": 2.0}
    assert [reference.peaks for reference in recorded_judge[0]["references"]] == [{"fp32": 1.5}]
    assert actions_of(submission) == ["submission.judged", "submission.received", "submission.validating"]


@pytest.mark.skipif(not HAS_VERDICT_ENGINE, reason="certification.verdict has not landed yet")
def test_real_engine_verdict_allows_certificate(tmp_path, rule_pack, lab_key, staff, django_capture_on_commit_callbacks):
    from certification.bundle import write_bundle
    from portal.certificates.services import issue_certificate
    from tests.certification.runfolder import build_run

    vendor, member, vendor_key = vendor_with_key("Example Vendor", "example-vendor", "X100", "SN-1")
    reference_path = write_bundle(build_run(tmp_path / "reference"), tmp_path / "reference.tar", lab_key).path
    add_reference(reference_path, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})

    vendor_path = write_bundle(build_run(tmp_path / "vendor"), tmp_path / "vendor.tar", vendor_key).path
    submission = submit(vendor_path, vendor, member, django_capture_on_commit_callbacks)

    assert submission.state == "judged"
    assert submission.report.verdict["reference_kind"] == "cpu-demo"
    assert submission.report.track_level("pretraining") == 1
    certificate = issue_certificate(submission=submission, track="pretraining", level=1, issued_by=staff)
    assert certificate.key_figures


def test_incomplete_records_never_pass(tmp_path, vendor, owner, card, vendor_key, reference, django_capture_on_commit_callbacks):
    if not HAS_VERDICT_ENGINE:
        pytest.skip("certification.verdict has not landed yet")
    submission = submit(build_bundle(tmp_path, vendor_key), vendor, owner, django_capture_on_commit_callbacks)
    # The engine either refuses the missing records inside the verdict or raises RecordsInvalid.
    assert submission.state in ("judged", "rejected")
    if submission.state == "rejected":
        assert submission.report.error_code == "records_invalid"
    else:
        assert submission.report.track_level("pretraining") == 0


def tampered(path):
    data = bytearray(path.read_bytes())
    position = data.index(b"pretrain-llama", 2048)
    data[position] = ord("P")
    return bytes(data)


@pytest.mark.parametrize("case, expected", [
    ("tampered", {"file_digest_mismatch", "archive_not_canonical", "member_not_in_manifest", "member_missing"}),
    ("not_tar", {"archive_invalid"}),
    ("unknown_key", {"signature_key_unknown"}),
])
def test_refused_bundle_is_rejected(tmp_path, vendor, owner, card, vendor_key, reference, recorded_judge, case, expected):
    from certification.signing import generate_key

    path = build_bundle(tmp_path, generate_key() if case == "unknown_key" else vendor_key)
    data = {"tampered": tampered(path), "not_tar": b"plain text, not a tar archive", "unknown_key": path.read_bytes()}[case]
    submission = stored_submission(vendor, data)

    pipeline.validate_submission(submission.pk)

    submission.refresh_from_db()
    assert submission.state == "rejected"
    assert submission.report.error_code in expected
    assert submission.report.error_message
    assert submission.bundle.read() == data
    assert recorded_judge == []


def stored_submission(vendor, data: bytes) -> Submission:
    """Store bytes as a received submission, bypassing the upload's quick archive check."""
    import hashlib

    with transaction.atomic():
        submission = Submission(vendor=vendor, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        submission.bundle.save("upload.tar", ContentFile(data), save=False)
        submission.save()
    return submission


def validated_submission(tmp_path, vendor, vendor_key, /, **run_fields) -> Submission:
    """Store a freshly built bundle of `vendor` with `run_fields` in its run.json, run the validation on it and return it reloaded."""
    submission = stored_submission(vendor, build_bundle(tmp_path, vendor_key, **run_fields).read_bytes())
    pipeline.validate_submission(submission.pk)
    submission.refresh_from_db()
    return submission


@pytest.mark.parametrize("run_fields, code", [
    ({"vendor": "somebody-else"}, "vendor_mismatch"),
    ({"model": "Y200"}, "card_not_registered"),
])
def test_bundle_for_wrong_vendor_or_card_is_rejected(tmp_path, vendor, card, vendor_key, reference, recorded_judge, run_fields, code):
    submission = validated_submission(tmp_path, vendor, vendor_key, **run_fields)
    assert submission.state == "rejected"
    assert submission.report.error_code == code
    assert submission.report.error_detail


@pytest.mark.parametrize("language, expected", [
    ("en", ["The bundle names the vendor Acme Chips, but it was uploaded for the vendor with the slug acme and the name Acme <b>芯片</b>",
            "'python -m agent run --vendor acme'"]),
    ("zh-hans", ["结果包中的厂商是 Acme Chips，但它是为标识为 acme、名称为 Acme <b>芯片</b> 的厂商上传的",
                 "'python -m agent run --vendor acme'"]),
])
def test_vendor_mismatch_names_slug_and_name(tmp_path, vendor, card, vendor_key, reference, recorded_judge, language, expected):
    submission = validated_submission(tmp_path, vendor, vendor_key, vendor="Acme Chips")

    with translation.override(language):
        detail = submission.report.error_detail
    assert submission.report.error_code == "vendor_mismatch"
    for text in expected:
        assert text in detail


def test_vendor_mismatch_stored_without_name(vendor):
    from portal.submissions.models import ValidationReport

    report = ValidationReport(error_code="vendor_mismatch", error_params={"bundle_vendor": "Demo Vendor", "vendor": "demo-vendor"})

    # A report stored before the name was recorded shows "-" in its place.
    with translation.override("en"):
        assert "the slug demo-vendor and the name -," in report.error_detail


def test_unapproved_card_is_rejected(tmp_path, vendor, card, vendor_key, reference, recorded_judge):
    card.approved = False
    card.save()
    submission = validated_submission(tmp_path, vendor, vendor_key)
    assert submission.report.error_code == "card_not_approved"


def test_missing_reference_is_rejected(tmp_path, vendor, card, vendor_key, rule_pack, recorded_judge):
    submission = validated_submission(tmp_path, vendor, vendor_key)
    assert submission.report.error_code == "reference_missing"


def test_revoked_key_is_not_trusted(tmp_path, vendor, card, vendor_key, reference, recorded_judge):
    from datetime import timedelta

    from django.utils import timezone

    vendor.signing_keys.update(revoked_at=timezone.now() - timedelta(minutes=1))
    submission = validated_submission(tmp_path, vendor, vendor_key)
    assert submission.report.error_code == "signature_key_revoked"


def test_validation_runs_once(tmp_path, vendor, card, vendor_key, reference, recorded_judge):
    submission = stored_submission(vendor, build_bundle(tmp_path, vendor_key).read_bytes())
    pipeline.validate_submission(submission.pk)
    pipeline.validate_submission(submission.pk)
    assert len(recorded_judge) == 1
    assert AuditEntry.objects.filter(action="submission.judged").count() == 1


def test_reference_needs_lab_key(tmp_path, rule_pack, vendor_key, reference_lab):
    from portal.submissions.errors import SubmissionError

    path = build_bundle(tmp_path, vendor_key, name="not-a-reference.tar")
    with pytest.raises(SubmissionError) as raised:
        add_reference(path, rule_pack=rule_pack, peak_tflops={"fp32": 1.0})
    assert raised.value.code == "reference_key_unknown"
    assert ReferenceBundle.objects.count() == 0


def test_cpu_demo_reference_label(reference):
    assert reference.label == "CPU demo reference"
    assert "A800" not in reference.label


def signed_bundle_bytes(key, run: dict, files: dict[str, bytes]) -> bytes:
    """Return a canonical archive of `files` with a manifest built from `run` as it is, signed with `key`; no run folder check applies."""
    import hashlib
    import io

    from certification.archive import ArchiveWriter
    from certification.bundle import ENVELOPE_NAME, MANIFEST_NAME, build_manifest, encode_manifest, sign_manifest

    entries = [{"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()]
    manifest = build_manifest(run, entries)
    manifest_bytes = encode_manifest(manifest)
    stream = io.BytesIO()
    writer = ArchiveWriter(stream)
    for name, data in [*files.items(), (MANIFEST_NAME, manifest_bytes), (ENVELOPE_NAME, sign_manifest(manifest, manifest_bytes, key))]:
        writer.add(name, data)
    writer.close()
    return stream.getvalue()


def test_card_not_object_is_rejected_readably(tmp_path, vendor, card, vendor_key, reference, rule_pack):
    import json

    run = {"run_id": "run-portal-test", "started_at": "2026-01-01T00:00:00+00:00", "vendor": "acme", "card": "X100",
           "rule_pack": {"name": rule_pack.name, "sha256": rule_pack.sha256}}
    data = signed_bundle_bytes(vendor_key, run, {"run.json": json.dumps(run).encode("utf-8")})
    submission = stored_submission(vendor, data)

    pipeline.validate_submission(submission.pk)

    submission.refresh_from_db()
    assert submission.state == "rejected"
    assert submission.report.error_code == "manifest_invalid"
    assert submission.report.error_params["value"] == "card"
    with translation.override("en"):
        assert submission.report.error_detail.startswith("The bundle's manifest.json is invalid at card: it does not meet the schema keyword type.")
    with translation.override("zh-hans"):
        assert submission.report.error_detail.startswith("结果包的 manifest.json 在 card 处无效：不满足模式关键字 type。")
    assert submission.bundle.read() == data
    assert actions_of(submission) == ["submission.rejected", "submission.validating"]


@pytest.mark.skipif(not HAS_VERDICT_ENGINE, reason="certification.verdict has not landed yet")
def test_malformed_config_is_judged_with_problem(tmp_path, rule_pack, lab_key, django_capture_on_commit_callbacks):
    from certification.bundle import write_bundle
    from tests.certification.runfolder import build_run

    vendor, member, vendor_key = vendor_with_key("Example Vendor", "example-vendor", "X100", "SN-1")
    reference_path = write_bundle(build_run(tmp_path / "reference"), tmp_path / "reference.tar", lab_key).path
    add_reference(reference_path, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})
    run_dir = build_run(tmp_path / "vendor", **{"pretrain-llama": {"config_extra": {"hyperparameters": "fast"}}})
    vendor_path = write_bundle(run_dir, tmp_path / "vendor.tar", vendor_key).path

    submission = submit(vendor_path, vendor, member, django_capture_on_commit_callbacks)

    assert submission.state == "judged"
    assert submission.report.track_level("pretraining") == 0
    criteria = {item["id"]: item for item in submission.report.verdict["criteria"]}
    fixed = criteria["pretrain-llama.fixed_hyperparameters"]
    assert fixed["status"] == "fail"
    assert fixed["details"]["code"] == "records_invalid"
    assert fixed["explanation"]["en"] == ("The records of workload pretrain-llama are invalid: "
                                          "config.json has hyperparameters 'fast', not an object.")
    assert fixed["explanation"]["zh"] == "工作负载 pretrain-llama 的记录无效：config.json 的 hyperparameters 是 'fast'，不是 JSON 对象。"
    assert criteria["pretrain.loss_alignment"]["details"]["code"] == "records_invalid"
    assert submission.bundle.read() == vendor_path.read_bytes()


@pytest.mark.skipif(not HAS_VERDICT_ENGINE, reason="certification.verdict has not landed yet")
def test_load_level_beyond_float_range_costs_only_plots(tmp_path, rule_pack, lab_key, django_capture_on_commit_callbacks):
    import json

    from certification.bundle import write_bundle
    from tests.certification.runfolder import build_run

    vendor, member, vendor_key = vendor_with_key("Example Vendor", "example-vendor", "X100", "SN-1")
    reference_path = write_bundle(build_run(tmp_path / "reference"), tmp_path / "reference.tar", lab_key).path
    add_reference(reference_path, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})
    run_dir = build_run(tmp_path / "vendor")
    search_path = run_dir / "workloads" / "infer-llama" / "search.json"
    search = json.loads(search_path.read_text(encoding="utf-8"))
    search["trials"][0]["level"] = 10**400
    search_path.write_text(json.dumps(search), encoding="utf-8")
    vendor_path = write_bundle(run_dir, tmp_path / "vendor.tar", vendor_key).path

    submission = submit(vendor_path, vendor, member, django_capture_on_commit_callbacks)

    assert submission.state == "judged"
    qps = next(item for item in submission.report.verdict["criteria"] if item["id"] == "infer.qps")
    assert qps["details"]["code"] == "records_invalid"
    assert submission.report.series == {}
