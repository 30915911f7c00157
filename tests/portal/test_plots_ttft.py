"""The time-to-first-token plot of the QPS criterion: series read by the pipeline from requests.jsonl, then drawn.

The hand-built runs give known latencies; the slow test draws it from a
real run of the smoke profile's inference workload.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

from certification.bundle import write_bundle
from portal.submissions.services import add_reference, load_rule_packs, receive_bundle
from tests.certification.runfolder import build_run

from .conftest import login, upload_file, vendor_with_key

ROOT = Path(__file__).resolve().parents[2]
INFERENCE_ONLY = {"workloads": ("infer-llama",), "planned": ("infer-llama",)}


def validate(run_dir: Path, reference_dir: Path, tmp_path: Path, pack_name: str, vendor, member, key, lab_key, callbacks):
    """Add the reference, upload the vendor's bundle, run the pipeline eagerly and return the submission."""
    rule_pack = next(pack for pack in load_rule_packs() if pack.name == pack_name)
    reference = write_bundle(reference_dir, tmp_path / "reference.tar", lab_key).path
    add_reference(reference, rule_pack=rule_pack, peak_tflops={"fp32": 1.5})
    path = write_bundle(run_dir, tmp_path / "vendor.tar", key).path
    with callbacks(execute=True):
        submission, _created = receive_bundle(vendor=vendor, upload=upload_file(path.read_bytes()), actor=member)
    submission.refresh_from_db()
    return submission


def ttft_plot(client, member, submission) -> str:
    index = next(number for number, item in enumerate(submission.report.criteria) if item["metric"] == "qps_per_tflops_ratio")
    login(client, member)
    client.cookies["django_language"] = "en"
    page = client.get(reverse("submission-detail", args=[submission.pk])).content.decode()
    assert reverse("submission-plot", args=[submission.pk, index]) in page
    response = client.get(reverse("submission-plot", args=[submission.pk, index]))
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def example_vendor(db):
    return vendor_with_key("Example Vendor", "example-vendor", "X100", "SN-1")


def test_series_holds_ttft_by_level(tmp_path, example_vendor, lab_key, django_capture_on_commit_callbacks):
    vendor, member, key = example_vendor
    run_dir, reference_dir = build_run(tmp_path / "vendor", **INFERENCE_ONLY), build_run(tmp_path / "reference", **INFERENCE_ONLY)
    submission = validate(run_dir, reference_dir, tmp_path, "demo-2026.1", vendor, member, key, lab_key, django_capture_on_commit_callbacks)

    ttft = submission.report.series["infer-llama"]["ttft"]
    assert sorted(ttft, key=float) == ["4", "8", "16"]
    assert ttft["8"]["failed"] == 0
    assert len(ttft["8"]["seconds"]) == 36  # three trials at load 8, each 8 requests per second for 1.5 s
    assert set(ttft["8"]["seconds"]) == {0.2}
    assert set(ttft["16"]["seconds"]) == {2.0}
    assert submission.report.series["infer-llama"]["reference_ttft"]["8"] == ttft["8"]


def test_plot_marks_limit_and_percentile(client, tmp_path, example_vendor, lab_key, django_capture_on_commit_callbacks):
    vendor, member, key = example_vendor
    run_dir, reference_dir = build_run(tmp_path / "vendor", **INFERENCE_ONLY), build_run(tmp_path / "reference", **INFERENCE_ONLY)
    submission = validate(run_dir, reference_dir, tmp_path, "demo-2026.1", vendor, member, key, lab_key, django_capture_on_commit_callbacks)

    svg = ttft_plot(client, member, submission)
    assert "infer.qps: time to first token at the chosen load" in svg
    assert "vendor at load 8, 36 requests" in svg
    assert "reference at load 8, 36 requests" in svg
    assert "vendor p99 0.200 s" in svg
    assert "limit 1 s" in svg


def test_plot_of_a_slow_vendor(client, tmp_path, example_vendor, lab_key, django_capture_on_commit_callbacks):
    """A last confirmation at 2 s leaves no confirmed level, so the plot shows the lowest load tried."""
    vendor, member, key = example_vendor
    run_dir = build_run(tmp_path / "vendor", **INFERENCE_ONLY, slow_confirmation=True)
    reference_dir = build_run(tmp_path / "reference", **INFERENCE_ONLY)
    submission = validate(run_dir, reference_dir, tmp_path, "demo-2026.1", vendor, member, key, lab_key, django_capture_on_commit_callbacks)
    criterion = next(item for item in submission.report.criteria if item["metric"] == "qps_per_tflops_ratio")
    assert criterion["status"] == "fail"

    svg = ttft_plot(client, member, submission)
    assert "vendor at load 4, 6 requests" in svg
    assert "reference at load" not in svg  # a failing vendor is not compared, so the verdict names no reference level


def test_plot_without_request_records(client, tmp_path, example_vendor, lab_key, django_capture_on_commit_callbacks):
    vendor, member, key = example_vendor
    run_dir, reference_dir = build_run(tmp_path / "vendor", **INFERENCE_ONLY), build_run(tmp_path / "reference", **INFERENCE_ONLY)
    submission = validate(run_dir, reference_dir, tmp_path, "demo-2026.1", vendor, member, key, lab_key, django_capture_on_commit_callbacks)
    submission.report.__class__.objects.filter(pk=submission.report.pk).update(series={})

    svg = ttft_plot(client, member, submission)
    assert "No per-request time to first token was recorded at the chosen load." in svg
    assert "vendor p99" not in svg


@pytest.fixture(scope="module")
def smoke_inference_run(tmp_path_factory) -> Path:
    """One real run of the smoke profile's inference workload (about 40 s on a CPU); vendor and reference bundles both pack it."""
    out = tmp_path_factory.mktemp("smoke-inference") / "run"
    command = [sys.executable, "-m", "agent", "run", "--profile", "smoke", "--workloads", "infer-llama", "--out", str(out),
               "--vendor", "smoke-vendor", "--card-model", "CPU demo card", "--card-serial", "cpu-demo-0"]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


@pytest.mark.slow
def test_plot_from_smoke_run(client, tmp_path, smoke_inference_run, lab_key, django_capture_on_commit_callbacks):
    vendor, member, key = vendor_with_key("Smoke Vendor", "smoke-vendor", "CPU demo card", "cpu-demo-0")
    submission = validate(smoke_inference_run, smoke_inference_run, tmp_path, "smoke-2026.1", vendor, member, key, lab_key,
                          django_capture_on_commit_callbacks)
    assert submission.state == "judged", submission.report.error_message

    levels = submission.report.series["infer-llama"]["ttft"]
    assert levels and all(entry["seconds"] or entry["failed"] for entry in levels.values())
    criterion = next(item for item in submission.report.criteria if item["metric"] == "qps_per_tflops_ratio")
    chosen = (criterion["details"].get("vendor") or {}).get("level") or min(float(level) for level in levels)
    svg = ttft_plot(client, member, submission)
    assert f"vendor at load {float(chosen):g}, " in svg
    assert "limit 1 s" in svg
    assert "No per-request time to first token" not in svg


def test_percentile_on_a_failed_request():
    """With one failed request among 20, the p99 rank falls on it, so the legend states that instead of drawing a line."""
    from django.utils import translation

    from portal.submissions import plots

    series = {"infer-llama": {"ttft": {"8": {"seconds": [0.2] * 19, "failed": 1}}, "reference_ttft": {}}}
    criterion = {"id": "infer.qps", "workload": "infer-llama", "metric": "qps_per_tflops_ratio", "status": "fail", "details": {"vendor": {"level": 8}}}
    settings = {"inference": {"time_to_first_token_max_seconds": 1.0, "time_to_first_token_percentile": 99}}
    with translation.override("en"):
        svg = plots.render_svg(criterion, series, settings).decode()
    assert "vendor p99: a request without a first token" in svg
    assert "vendor: 1 requests without a first token" in svg
    assert "vendor p99 0." not in svg
