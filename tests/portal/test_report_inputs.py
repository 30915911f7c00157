"""The submission report lists the input digests of the vendor run beside the reference run's, in both languages."""

import json

from django.db import transaction
from django.urls import reverse

from portal.registry.models import Card, Membership, Vendor
from portal.submissions.services import add_reference, receive_bundle

from .conftest import login, make_user, upload_file

OTHER = "a" * 64


def judged_with_lambada(tmp_path, rule_pack, lab_key, digest, django_capture_on_commit_callbacks):
    """Upload a real vendor bundle whose run read a LAMBADA file with `digest` and let the pipeline judge it."""
    from certification.bundle import write_bundle
    from certification.signing import generate_key
    from portal.registry.services import register_signing_key
    from tests.certification.runfolder import build_run

    vendor = Vendor.objects.create(slug="example-vendor", name="Example Vendor")
    Card.objects.create(vendor=vendor, model="X100", serial="SN-1", peak_tflops={"fp32": 1.5}, approved=True)
    member = make_user("example-member")
    Membership.objects.create(vendor=vendor, user=member)
    vendor_key = generate_key()
    with transaction.atomic():
        register_signing_key(vendor, vendor_key.public_pem())
    reference_path = write_bundle(build_run(tmp_path / "reference"), tmp_path / "reference.tar", lab_key).path
    add_reference(reference_path, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})

    run_dir = build_run(tmp_path / "vendor")
    run = json.loads((run_dir / "run.json").read_text())
    run["inputs"]["dataset lambada"]["sha256"] = digest
    (run_dir / "run.json").write_text(json.dumps(run))
    config_path = run_dir / "workloads/pretrain-llama/config.json"
    config = json.loads(config_path.read_text())
    config["datasets"]["lambada"]["sha256"] = digest
    config_path.write_text(json.dumps(config))
    vendor_path = write_bundle(run_dir, tmp_path / "vendor.tar", vendor_key).path

    with django_capture_on_commit_callbacks(execute=True):
        submission, _created = receive_bundle(vendor=vendor, upload=upload_file(vendor_path.read_bytes()), actor=member)
    submission.refresh_from_db()
    return submission, member


def test_report_shows_input_comparison(client, tmp_path, rule_pack, lab_key, django_capture_on_commit_callbacks):
    pin = rule_pack.parsed().data["datasets"]["lambada"]["sha256"]
    submission, member = judged_with_lambada(tmp_path, rule_pack, lab_key, OTHER, django_capture_on_commit_callbacks)
    assert submission.state == "judged"
    lambada = next(item for item in submission.report.verdict["criteria"] if item["id"] == "pretrain.lambada")
    assert (lambada["status"], lambada["details"]["code"]) == ("fail", "input_digest_mismatch")
    login(client, member)
    url = reverse("submission-detail", args=[submission.pk])

    client.cookies["django_language"] = "en"
    page = client.get(url).content.decode()
    assert "Inputs compared with the reference" in page
    assert f'<code title="{OTHER}">{OTHER[:12]}</code>' in page
    assert f'<code title="{pin}">{pin[:12]}</code>' in page
    assert "no: the digests differ" in page
    assert "tokenizer <code>llama2</code>" in page

    client.cookies["django_language"] = "zh-hans"
    page = client.get(url).content.decode()
    assert "与基线比较的输入" in page
    assert "否：摘要不同" in page
    assert "分词器 <code>llama2</code>" in page
    assert "厂商 sha256" in page


def test_report_marks_equal_inputs(client, tmp_path, rule_pack, lab_key, django_capture_on_commit_callbacks):
    pin = rule_pack.parsed().data["datasets"]["lambada"]["sha256"]
    submission, member = judged_with_lambada(tmp_path, rule_pack, lab_key, pin, django_capture_on_commit_callbacks)
    login(client, member)
    client.cookies["django_language"] = "en"

    page = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()

    assert "no: the digests differ" not in page
    assert page.count(f'<code title="{pin}">') == 3 * page.count("data set <code>lambada</code>")
    assert "data set <code>lambada</code>" in page
