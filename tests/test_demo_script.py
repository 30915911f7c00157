"""scripts/demo.py: the line printed when the portal's port moves, and the per-track summary at the end."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from certification.rulepack import load_rule_pack
from certification.verdict import CriterionResult, derive_levels

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failing(criterion_id: str, workload: str, metric: str) -> CriterionResult:
    return CriterionResult(
        id=criterion_id, workload=workload, metric=metric, status="fail", measured=0.1, reference=1.0, bound=0.2,
        explanation={"zh": "", "en": ""}, hint={"zh": "", "en": ""}, details={},
    )


def demo_report(*results: CriterionResult) -> dict:
    """A report as `show_submission --json` prints it, with the tracks that the verdict engine derives for the demo pack."""
    tracks = derive_levels(load_rule_pack("demo-2026.1"), list(results))
    return {"verdict": json.loads(json.dumps({"tracks": tracks}))}


def test_port_moves_with_a_note(demo, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        port = demo.choose_port(busy_port)
    output = capsys.readouterr().out
    assert port != busy_port
    assert f"port {busy_port} is in use, so this portal runs on port {port}" in output
    assert "keep, in their signed credentials, the links of the port they were issued on" in output


def test_free_port_is_kept_silently(demo, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert demo.choose_port(free) == free
    assert capsys.readouterr().out == ""


def test_summary_names_failing_criterion(demo):
    report = demo_report(failing("infer-llama.qps_per_tflops", "infer-llama", "qps_per_tflops_ratio"))
    certificates = [{"track": "finetuning", "number": "PPLM-2026-00001"}, {"track": "pretraining", "number": "PPLM-2026-00002"}]
    lines = demo.track_lines(report, certificates)
    assert "  finetuning: certified level 2 (PPLM-2026-00001)" in lines
    assert "  pretraining: certified level 1 (PPLM-2026-00002)" in lines
    assert "  inference: not certified, failing: infer-llama.qps_per_tflops (fail)" in lines
    assert "  dpo: no requirements in this rule pack" in lines


def test_summary_names_required_track(demo):
    report = demo_report(failing("sft-llama.rouge", "sft-llama", "rouge_difference"))
    lines = demo.track_lines(report, [{"track": "inference", "number": "PPLM-2026-00003"}])
    assert "  finetuning: not certified, failing: sft-llama.rouge (fail)" in lines
    assert "  pretraining: not certified, failing: track finetuning at level 1 (it reached level 0)" in lines
    assert "  inference: certified level 2 (PPLM-2026-00003)" in lines


def test_summary_names_next_level_gap(demo):
    report = demo_report(failing("sd-infer-digits.fid", "sd-infer-digits", "fid"))
    lines = demo.track_lines(report, [{"track": "inference", "number": "PPLM-2026-00004"}])
    assert "  inference: certified level 1 (PPLM-2026-00004); level 2 not reached, failing: sd-infer-digits.fid (fail)" in lines


def test_summary_names_earlier_signed_link(demo, capsys):
    setup = {"member_user": "demo-vendor", "staff_user": "demo-staff"}
    upload = {"url": "http://127.0.0.1:8123/submissions/1/"}
    earlier = {"number": "PPLM-2026-00001", "track": "finetuning", "level": 1, "verify_url": "/certificates/PPLM-2026-00001/",
               "pdf_url": "/certificates/PPLM-2026-00001/pdf/", "pdf_path": "var/demo/certificates/PPLM-2026-00001.pdf",
               "credential_url": "http://127.0.0.1:8000/certificates/PPLM-2026-00001/"}
    fresh = {**earlier, "number": "PPLM-2026-00002", "credential_url": "http://127.0.0.1:8123/certificates/PPLM-2026-00002/"}
    demo.print_summary("http://127.0.0.1:8123", upload, [earlier, fresh], setup, 60.0)
    output = capsys.readouterr().out
    assert "issued by an earlier demo: its signed credential keeps the link http://127.0.0.1:8000/certificates/PPLM-2026-00001/" in output
    assert output.count("issued by an earlier demo") == 1
