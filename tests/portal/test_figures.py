"""Key figures of a certificate: units for every metric, no raw dicts, and both languages."""

import pytest
from django.urls import reverse
from django.utils import translation

from portal.certificates.figures import display_figures, format_figure, stored_figure
from portal.certificates.services import issue_certificate

from .helpers_verdict import judged_submission, verdict

PACK_SETTINGS = {"inference": {"time_to_first_token_percentile": 99, "time_to_first_token_max_seconds": 1.0}}
HUMAN_BOUND = {"gsb_min": -0.05, "min_pairs": 20, "alpha": 0.05}
ITEMS = [
    {"id": "infer.qps", "metric": "qps_per_tflops_ratio", "measured": 0.012, "reference": 0.015, "bound": 0.2, "details": {"ratio": 0.8}},
    {"id": "sd-infer.throughput", "metric": "images_per_second_ratio", "measured": 0.5, "reference": 0.4, "bound": 0.4, "details": {"ratio": 1.25}},
    {"id": "sd-infer.human", "metric": "sd_image_gsb", "measured": 0.0, "reference": None, "bound": HUMAN_BOUND, "details": {"pairs": 20}},
    {"id": "sd-sft.loss_alignment", "metric": "sd_loss_alignment", "measured": {"mean_relative_error": 0.001, "max_relative_error": 0.004},
     "reference": None, "bound": {"mean_relative_error_max": 0.02, "max_relative_error_max": 0.05}},
    {"id": "pretrain.stability", "metric": "warm_start_stability", "measured": {"warm_starts": 1, "failed": 0}, "reference": None,
     "bound": {"sigma_multiple": 5, "relative_margin": 0.05, "window_after_resume": 200}},
    {"id": "other", "metric": "some_new_metric", "measured": 1.5, "reference": None, "bound": {"limit": 2, "steps": 20}},
]


@pytest.mark.parametrize("item", ITEMS, ids=[item["id"] for item in ITEMS])
@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_no_raw_dicts(item, language):
    with translation.override(language):
        figure = format_figure(stored_figure(item, PACK_SETTINGS)["values"] | {"id": item["id"], "metric": item["metric"]})

    for key in ("measured", "reference", "bound"):
        assert "{" not in figure[key]
        assert "'" not in figure[key]


def test_qps_has_units_and_latency():
    figure = stored_figure(ITEMS[0], PACK_SETTINGS)

    assert figure["measured"] == "0.012\u00a0QPS/TFLOPS (80.0\u00a0% of the reference)"
    assert figure["reference"] == "0.015\u00a0QPS/TFLOPS"
    assert figure["bound"] == "≥ 20\u00a0% of the reference, at p99 time to first token ≤ 1.0 s"


def test_figures_follow_language():
    stored = [stored_figure(item, PACK_SETTINGS) for item in ITEMS[:3]]

    with translation.override("zh-hans"):
        chinese = display_figures(stored)
    with translation.override("en"):
        english = display_figures(stored)

    assert chinese[0]["bound"] == "≥ 参考值的 20\u00a0%，且 p99 首字延迟 ≤ 1.0 秒"
    assert chinese[1]["measured"] == "0.5\u00a0images/s/TFLOPS（为参考值的 125.0\u00a0%）"
    assert chinese[2]["bound"] == "GSB ≥ -5\u00a0%，至少 20 对，符号检验 α = 0.05"
    assert english[2]["bound"] == "GSB ≥ -5\u00a0%, at least 20 pairs, sign test α = 0.05"


def test_old_figures_keep_their_text():
    old = [{"id": "pretrain.throughput", "metric": "throughput_ratio", "measured": "1.2 tokens/s/TFLOPS", "reference": "1 tokens/s/TFLOPS", "bound": "≥ 40 %"}]

    with translation.override("zh-hans"):
        assert display_figures(old) == old


@pytest.mark.parametrize("language, expected", [("en", "of the reference"), ("zh-hans", "参考值的")])
def test_certificate_page_in_language(client, vendor, card, rule_pack, staff, settings, tmp_path, language, expected):
    settings.PORTAL_CREDENTIAL_KEY_PATH = tmp_path / "portal.key"
    submission = judged_submission(vendor, card, rule_pack, verdict(pretraining_level=1, finetuning_level=0))
    certificate = issue_certificate(submission=submission, track="pretraining", level=1, issued_by=staff)

    page = client.get(reverse("certificate-detail", args=[certificate.number]), HTTP_ACCEPT_LANGUAGE=language).content.decode()

    table = page[page.index('id="key-figures"'):]
    assert expected in table
    assert "tokens/s/TFLOPS" in table
    assert "values" in certificate.key_figures[0]
