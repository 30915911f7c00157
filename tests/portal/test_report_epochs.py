"""The submission report shows the run-length and batch checks of fine-tuning that trains by epochs, in both languages."""

from django.urls import reverse
from django.utils.html import escape

from .conftest import login
from .helpers_verdict import judged_submission


def epochs_verdict(tmp_path) -> dict:
    """Judge a vendor run of 41 train pairs against a reference run of 42 under the epochs pack, with the real engine."""
    from certification.verdict import Reference, judge
    from tests.certification.test_verdict import PEAKS, make_bundle
    from tests.certification.test_verdict_epochs import FINETUNING, PACK

    reference = make_bundle(tmp_path / "reference", pack=PACK, workloads=FINETUNING, planned=FINETUNING)
    vendor = make_bundle(tmp_path / "vendor", pack=PACK, workloads=FINETUNING, planned=FINETUNING, **{"sft-llama": {"train_pairs": 41}})
    return judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS).to_dict()


def test_report_shows_epoch_checks(client, tmp_path, vendor, card, rule_pack, owner):
    payload = epochs_verdict(tmp_path)
    criteria = {item["id"]: item for item in payload["criteria"]}
    run_length, rouge = criteria["sft-llama.run_length"], criteria["sft.rouge"]
    assert rouge["details"]["code"] == "epoch_batches_mismatch"
    submission = judged_submission(vendor, card, rule_pack, payload)
    url = reverse("submission-detail", args=[submission.pk])
    login(client, owner)

    client.cookies["django_language"] = "en"
    page = client.get(url).content.decode()
    assert "sft-llama.run_length" in page
    assert escape(run_length["explanation"]["en"]) in page
    assert escape(rouge["explanation"]["en"]) in page
    assert escape(rouge["hint"]["en"]) in page

    client.cookies["django_language"] = "zh-hans"
    page = client.get(url).content.decode()
    assert escape(run_length["explanation"]["zh"]) in page
    assert escape(rouge["explanation"]["zh"]) in page
