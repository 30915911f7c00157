"""The submission report lists the input digests of the vendor run beside the reference run's, in both languages."""

import json

from django.urls import reverse
from django.utils.html import escape

from portal.submissions.services import add_reference, receive_bundle

from .conftest import login, upload_file, vendor_with_key
from .test_revalidation import revalidate

OTHER = "a" * 64


def judged_with_lambada(tmp_path, rule_pack, lab_key, digest, django_capture_on_commit_callbacks, reference_lambadas=(None,)):
    """Upload a real vendor bundle whose run read a LAMBADA file with `digest` and let the pipeline judge it.

    One reference is added per item of `reference_lambadas`, in order: the sha256 of its LAMBADA file, None for the pack's file.
    """
    from certification.bundle import write_bundle
    from tests.certification.runfolder import build_run
    from tests.certification.test_verdict_inputs import set_digest

    vendor, member, vendor_key = vendor_with_key("Example Vendor", "example-vendor", "X100", "SN-1")
    for number, lambada in enumerate(reference_lambadas):
        reference_dir = build_run(tmp_path / f"reference-{number}")
        if lambada is not None:
            set_digest(reference_dir, "dataset lambada", lambada)
        reference_path = write_bundle(reference_dir, tmp_path / f"reference-{number}.tar", lab_key).path
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
    assert "与参考比较的输入" in page
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


def test_report_prefers_matching_reference(client, tmp_path, rule_pack, lab_key, django_capture_on_commit_callbacks):
    pin = rule_pack.parsed().data["datasets"]["lambada"]["sha256"]
    submission, member = judged_with_lambada(tmp_path, rule_pack, lab_key, pin, django_capture_on_commit_callbacks, reference_lambadas=(OTHER, None))
    compared = submission.report.verdict["inputs"]["pretrain-llama"]
    choice = compared["reference_choice"]
    lambada = next(item for item in submission.report.verdict["criteria"] if item["id"] == "pretrain.lambada")
    assert choice["code"] == "inputs_match"
    assert len(choice["candidates"]) == 2
    assert compared["reference_bundle_id"] == choice["candidates"][1]
    assert (lambada["status"], lambada["details"]["code"]) == ("pass", "lambada_pass")
    login(client, member)
    url = reverse("submission-detail", args=[submission.pk])

    client.cookies["django_language"] = "en"
    page = client.get(url).content.decode()
    assert escape(choice["explanation"]["en"]) in page
    assert escape(f"{choice['candidates'][1]} is the first of them whose input digests all equal the vendor run's") in page
    assert f'<code title="{OTHER}">' not in page

    client.cookies["django_language"] = "zh-hans"
    page = client.get(url).content.decode()
    assert escape(choice["explanation"]["zh"]) in page


def test_earlier_verdict_shows_inputs(client, staff, tmp_path, rule_pack, lab_key, django_capture_on_commit_callbacks):
    submission, _member = judged_with_lambada(tmp_path, rule_pack, lab_key, OTHER, django_capture_on_commit_callbacks)
    login(client, staff)
    revalidate(client, submission, django_capture_on_commit_callbacks)
    earlier = submission.superseded_reports.get()
    choice = earlier.verdict["inputs"]["pretrain-llama"]["reference_choice"]
    url = reverse("submission-detail", args=[submission.pk])

    client.cookies["django_language"] = "en"
    page = client.get(url).content.decode()
    section = page[page.index(f'id="earlier-verdict-{earlier.pk}"'):]
    section = section[:section.index("</section>")]
    assert '<details class="inputs"><summary>Inputs compared with the reference</summary>' in section
    assert f'<code title="{OTHER}">{OTHER[:12]}</code>' in section
    assert "no: the digests differ" in section
    assert escape(choice["explanation"]["en"]) in section
    assert page.count('id="inputs"') == 1

    client.cookies["django_language"] = "zh-hans"
    page = client.get(url).content.decode()
    section = page[page.index(f'id="earlier-verdict-{earlier.pk}"'):]
    section = section[:section.index("</section>")]
    assert "<summary>与参考比较的输入</summary>" in section
    assert "否：摘要不同" in section
    assert escape(choice["explanation"]["zh"]) in section


def test_report_without_reference_choice(client, tmp_path, rule_pack, lab_key, django_capture_on_commit_callbacks):
    # A verdict stored before the reference choice was recorded names only the reference bundle.
    submission, member = judged_with_lambada(tmp_path, rule_pack, lab_key, OTHER, django_capture_on_commit_callbacks)
    report = submission.report
    bundle_id = report.verdict["inputs"]["pretrain-llama"]["reference_bundle_id"]
    for compared in report.verdict["inputs"].values():
        del compared["reference_choice"]
    report.save(update_fields=["verdict"])
    login(client, member)

    client.cookies["django_language"] = "en"
    page = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()
    assert f"Reference bundle {bundle_id}" in page

    client.cookies["django_language"] = "zh-hans"
    page = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()
    assert f"参考结果包 {bundle_id}" in page
