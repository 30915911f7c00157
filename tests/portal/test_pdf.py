"""Certificate PDFs: Chinese text renders with the embedded font; the fetcher loads only static files."""

import shutil
import subprocess

import pytest
from django.urls import reverse

from portal.certificates.pdf import StaticFilesOnlyFetcher, static_dir
from portal.certificates.services import issue_certificate

from .helpers_verdict import judged_submission, verdict

pytestmark = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext, pdffonts)")


@pytest.fixture
def pdf_path(client, vendor, card, rule_pack, staff, tmp_path):
    submission = judged_submission(vendor, card, rule_pack, verdict())
    certificate = issue_certificate(submission=submission, track="pretraining", level=1, issued_by=staff)
    response = client.get(reverse("certificate-pdf", args=[certificate.number]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    path = tmp_path / "certificate.pdf"
    path.write_bytes(response.content)
    path.with_suffix(".number").write_text(certificate.number)
    return path


def pdf_text(path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True).stdout


def test_pdf_contains_chinese_and_english(pdf_path):
    text = pdf_text(pdf_path)
    for expected in ["飞桨大模型工具链适配认证证书", "预训练", "CPU 演示参考结果", "CPU demo reference", "demo-2026.1", "X100", "Acme <b>芯片</b>", pdf_path.with_suffix(".number").read_text()]:
        assert expected in text


def test_pdf_embeds_cjk_font(pdf_path):
    fonts = subprocess.run(["pdffonts", str(pdf_path)], check=True, capture_output=True, text=True).stdout
    rows = [line for line in fonts.splitlines() if "WenQuanYi" in line]
    assert rows
    assert all(" yes " in row for row in rows)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x.css",
    "https://example.invalid/font.ttf",
    "file:///etc/passwd",
    "file:///work/../etc/hostname",
    "ftp://127.0.0.1/x",
])
def test_fetcher_rejects_outside_urls(url):
    with pytest.raises(ValueError):
        StaticFilesOnlyFetcher().fetch(url)


def test_fetcher_serves_static_font_and_data_uri():
    font = StaticFilesOnlyFetcher().fetch((static_dir() / "fonts" / "wqy-microhei.ttf").as_uri())
    assert font.read(4) == b"\x00\x01\x00\x00"
    data = StaticFilesOnlyFetcher().fetch("data:text/plain;base64,aGk=")
    assert data.read() == b"hi"


HOSTILE_NAME = '<img src="file:///etc/passwd"><link rel="stylesheet" href="http://127.0.0.1:{port}/x.css"><style>body {{ background: url(file:///etc/hostname) }}</style>芯片'


@pytest.fixture
def listening_server():
    """A loopback HTTP server that records every request, to prove the renderer sends none."""
    import http.server
    import threading

    requests = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], requests
    server.shutdown()


def test_hostile_vendor_text_fetches_nothing(client, vendor, card, rule_pack, staff, tmp_path, monkeypatch, listening_server):
    port, requests = listening_server
    vendor.name = HOSTILE_NAME.format(port=port)
    vendor.save()
    fetched = []
    original = StaticFilesOnlyFetcher.fetch

    def recording_fetch(self, url, headers=None):
        fetched.append(url)
        return original(self, url, headers)

    monkeypatch.setattr(StaticFilesOnlyFetcher, "fetch", recording_fetch)
    submission = judged_submission(vendor, card, rule_pack, verdict())
    certificate = issue_certificate(submission=submission, track="pretraining", level=1, issued_by=staff)
    path = tmp_path / "hostile.pdf"
    path.write_bytes(client.get(reverse("certificate-pdf", args=[certificate.number])).content)

    assert requests == []
    assert all(url.startswith("data:") or url.startswith(static_dir().as_uri()) for url in fetched), fetched
    text = pdf_text(path)
    assert "file:///etc/passwd" in text
    assert "url(file:///etc/hostname)" in text


def test_pdf_key_figures_have_units(pdf_path):
    text = pdf_text(pdf_path)
    assert "tokens/s/TFLOPS" in text
    assert "签发日期" in text


def _wrapping_verdict() -> dict:
    """Return a verdict whose pretraining figures are as long as the demo's, which wrapped in narrow cells."""
    payload = verdict()
    payload["criteria"] = [
        {"id": "pretrain-llama.fixed_hyperparameters", "workload": "pretrain-llama", "metric": "fixed_hyperparameters", "status": "pass",
         "measured": None, "reference": None, "details": {},
         "bound": {"learning_rate": 0.003, "lr_scheduler_type": "cosine", "warmup_steps": 20, "min_learning_rate": 0.0003, "max_steps": 200,
                   "global_batch_size": 4, "max_seq_length": 64, "seed": 42, "dropout": 0.0, "weight_decay": 0.01, "validation_sequences": 64}},
        {"id": "pretrain.loss_alignment", "workload": "pretrain-llama", "metric": "loss_window_alignment", "status": "pass",
         "measured": {"mean_relative_error": 0.0, "max_relative_error": 0.0}, "reference": {"window_means": 10},
         "bound": {"mean_relative_error_max": 0.02, "max_relative_error_max": 0.05}, "details": {}},
        {"id": "pretrain.throughput", "workload": "pretrain-llama", "metric": "throughput_ratio", "status": "pass",
         "measured": 657.17561147515, "reference": 662.2329444540576, "bound": 0.2, "details": {"ratio": 0.99, "data_type": "fp32"}},
    ]
    return payload


@pytest.mark.parametrize("language, figures", [
    ("zh-hans", ["平均 0.00 %", "最大 0.00 %", "2.00 %", "5.00 %", "657 tokens/s/TFLOPS", "662 tokens/s/TFLOPS", "99.2 %"]),
    ("en", ["mean 0.00 %", "max 0.00 %", "2.00 %", "5.00 %", "657 tokens/s/TFLOPS", "662 tokens/s/TFLOPS", "(99.2 %"]),
])
def test_pdf_keeps_numbers_with_units(client, vendor, card, rule_pack, staff, tmp_path, language, figures):
    submission = judged_submission(vendor, card, rule_pack, _wrapping_verdict())
    certificate = issue_certificate(submission=submission, track="pretraining", level=1, issued_by=staff)
    client.cookies["django_language"] = language
    path = tmp_path / f"certificate-{language}.pdf"
    path.write_bytes(client.get(reverse("certificate-pdf", args=[certificate.number]), HTTP_ACCEPT_LANGUAGE=language).content)
    lines = [" ".join(line.replace("\u00a0", " ").split()) for line in pdf_text(path).splitlines()]
    text = "\n".join(lines)

    assert "pretrain-llama.fixed_hyperparameters" in text
    for figure in figures:
        assert figure in text, text
    assert "%" not in [line.strip() for line in lines]
    assert not any(line.endswith(("tokens/", "tokens/s/")) for line in lines)
    assert not any(line.endswith("pretrain-") for line in lines)


def test_pdf_gives_figures_in_both_languages(client, vendor, card, rule_pack, staff, tmp_path):
    payload = verdict()
    payload["criteria"] = [
        {"id": "pretrain.lambada", "workload": "pretrain-llama", "metric": "lambada_accuracy_difference", "status": "pass",
         "measured": 41.5, "reference": 42.0, "bound": 1.0, "details": {}},
    ]
    certificate = issue_certificate(submission=judged_submission(vendor, card, rule_pack, payload), track="pretraining", level=1, issued_by=staff)
    path = tmp_path / "certificate.pdf"
    path.write_bytes(client.get(reverse("certificate-pdf", args=[certificate.number]), HTTP_ACCEPT_LANGUAGE="zh-hans").content)
    text = " ".join(pdf_text(path).replace("\u00a0", " ").split())

    assert "|Δ| ≤ 1.0 个百分点" in text
    assert "|Δ| ≤ 1.0 pt" in text
    assert text.count("41.50 %") == 1
