"""Report plots: SVG drawn from the series of the bundle's records and the verdict's details."""

from django.urls import reverse

from portal.submissions import plots

from .conftest import login
from .helpers_verdict import judged_submission

LOSS = {
    "id": "pretrain.loss", "workload": "pretrain-llama", "metric": "loss_window_alignment", "status": "fail",
    "measured": {"mean_relative_error": 0.01, "max_relative_error": 0.05}, "reference": {"window_means": 2},
    "bound": {"mean_relative_error_max": 0.02, "max_relative_error_max": 0.04},
    "details": {"vendor_window_means": [2.0, 1.5], "reference_window_means": [2.02, 1.43], "relative_errors": [0.0099, 0.049]},
}
ROUGE = {
    "id": "sft.rouge", "workload": "sft-llama", "metric": "rouge_difference", "status": "pass", "measured": {}, "reference": {}, "bound": 1.0,
    "details": {"differences": {"rouge1": -0.4, "rougeL": 0.2}, "difference_ci95": {"rouge1": [-0.9, 0.1], "rougeL": [-0.3, 0.6]}},
}
SERIES = {"pretrain-llama": {
    "loss": [[step, 2.5 - step / 40] for step in range(1, 41)],
    "reference_loss": [[step, 2.52 - step / 40] for step in range(1, 41)],
    "throughput": [[step, 1000 + step] for step in range(1, 41)],
}}


def test_loss_plot_shows_curves_windows_and_bounds():
    svg = plots.render_svg(LOSS, SERIES, {"loss_alignment": {"window": 20, "steps": 40}}).decode()
    assert svg.startswith("<?xml") and "<svg" in svg
    assert "pretrain.loss" in svg
    assert svg.count("<path") > 5  # two curves, four window means, two error bars, two bound lines


def test_rouge_plot_names_each_variant():
    svg = plots.render_svg(ROUGE, {}, {}).decode()
    assert "rouge1" in svg and "rougeL" in svg


def test_report_page_links_its_plots(client, owner, vendor, card, rule_pack):
    payload = {"criteria": [LOSS, ROUGE, {**ROUGE, "id": "x", "metric": "fixed_hyperparameters"}], "tracks": {}}
    submission = judged_submission(vendor, card, rule_pack, payload)
    submission.report.__class__.objects.filter(pk=submission.report.pk).update(series=SERIES)
    login(client, owner)
    page = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()
    assert reverse("submission-plot", args=[submission.pk, 0]) in page
    assert reverse("submission-plot", args=[submission.pk, 2]) not in page
    response = client.get(reverse("submission-plot", args=[submission.pk, 0]))
    assert response["Content-Type"] == "image/svg+xml"
    assert client.get(reverse("submission-plot", args=[submission.pk, 2])).status_code == 404
