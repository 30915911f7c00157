"""scripts/demo.py: the line printed when the portal's port moves, and the per-track summary at the end."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import socket
import subprocess
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


@pytest.fixture(autouse=True)
def english(monkeypatch):
    """Run each test in English unless it sets LANG itself, whatever the shell's locale."""
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")


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
    assert "keep, in their PDFs and signed credentials, the links of the port they were issued on" in output


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
    assert "issued by an earlier demo: its PDF and signed credential keep the link http://127.0.0.1:8000/certificates/PPLM-2026-00001/" in output
    assert output.count("issued by an earlier demo") == 1


DEMO_LABELS = {"vendor": "demo-vendor", "card_model": "CPU demo card", "card_serial": "reference-cpu-0"}


def start_demo_run(run_dir: Path, labels: dict[str, str]):
    """Create the run folder that `python -m agent run --profile demo` creates before its first workload."""
    from agent.runner.folder import RunFolder
    from agent.runner.profiles import load_profile

    folder = RunFolder.create(run_dir, load_profile("demo"), load_rule_pack("demo-2026.1"), labels, ["pretrain-llama"])
    folder.event("start", workloads=["pretrain-llama"])
    return folder


@pytest.fixture
def agent_calls(demo, tmp_path, monkeypatch):
    """Point the demo's state at tmp_path and record the agent commands that run_and_pack would run."""
    calls = []
    monkeypatch.setattr(demo, "STATE", tmp_path)
    monkeypatch.setattr(demo, "agent", lambda *args, capture=False: calls.append([str(arg) for arg in args]) or "")
    return calls


def run_reference(demo) -> None:
    demo.run_and_pack("reference", Path("reference.key"), DEMO_LABELS["vendor"], DEMO_LABELS["card_model"], DEMO_LABELS["card_serial"])


def test_rerun_starts_fresh_without_run(demo, agent_calls, tmp_path, capsys):
    run_reference(demo)
    (tmp_path / "runs" / "reference").mkdir(parents=True)
    run_reference(demo)

    assert [call[0] for call in agent_calls] == ["run", "bundle", "run", "bundle"]
    assert "--resume" not in agent_calls[0]
    assert "--resume" not in agent_calls[2]
    assert "--resume" not in capsys.readouterr().out


def test_rerun_resumes_interrupted_run(demo, agent_calls, tmp_path, capsys):
    from agent.runner.folder import RunFolder
    from agent.runner.profiles import load_profile

    run_dir = tmp_path / "runs" / "reference"
    start_demo_run(run_dir, DEMO_LABELS)
    run_reference(demo)

    assert agent_calls[0][:5] == ["run", "--profile", "demo", "--out", str(run_dir)]
    assert agent_calls[0][-1] == "--resume"
    assert agent_calls[1][0] == "bundle"
    output = capsys.readouterr().out
    assert f"{run_dir} contains a run that an earlier demo started and did not pack; continuing it with --resume" in output
    # The agent accepts that folder for --resume: same profile and rule pack bytes.
    assert RunFolder.resume(run_dir, load_profile("demo"), load_rule_pack("demo-2026.1")).read_run()["vendor"] == "demo-vendor"


def test_rerun_rejects_run_of_other_vendor(demo, agent_calls, tmp_path):
    run_dir = tmp_path / "runs" / "reference"
    start_demo_run(run_dir, {**DEMO_LABELS, "vendor": "other-lab"})

    with pytest.raises(SystemExit) as stop:
        run_reference(demo)
    assert "contains a run with other settings (vendor: other-lab, not demo-vendor)" in str(stop.value.code)
    assert f"delete {run_dir} and run the demo again" in str(stop.value.code)
    assert agent_calls == []
    assert (run_dir / "run.json").is_file()


def test_rerun_rejects_run_of_changed_pack(demo, agent_calls, tmp_path):
    run_dir = tmp_path / "runs" / "reference"
    start_demo_run(run_dir, DEMO_LABELS)
    run = json.loads((run_dir / "run.json").read_text())
    run["rule_pack"]["sha256"] = "0" * 64
    (run_dir / "run.json").write_text(json.dumps(run))

    with pytest.raises(SystemExit) as stop:
        run_reference(demo)
    assert "rule pack: demo-2026.1 (000000000000), not demo-2026.1 (" in str(stop.value.code)
    assert agent_calls == []


def test_rerun_rejects_folder_without_run(demo, agent_calls, tmp_path):
    run_dir = tmp_path / "runs" / "reference"
    run_dir.mkdir(parents=True)
    (run_dir / "notes.txt").write_text("not a run")

    with pytest.raises(SystemExit) as stop:
        run_reference(demo)
    assert f"{run_dir} contains files but no run.json" in str(stop.value.code)
    assert agent_calls == []


def test_upload_keeps_token_out_of_argv(demo, monkeypatch, capsys):
    token = "0123456789abcdef0123456789abcdef01234567"
    started = []

    def record(argv, **options):
        started.append((argv, options))
        return subprocess.CompletedProcess(argv, 0, stdout='{"id": 1, "url": "http://127.0.0.1:8000/submissions/1/"}\n')

    monkeypatch.setattr(demo.subprocess, "run", record)
    reply = demo.upload_bundle("http://127.0.0.1:8000", Path("var/demo/vendor.bundle.tar"), token)

    argv, options = started[0]
    assert reply["id"] == 1
    assert argv[1:4] == ["-m", "agent", "upload"]
    assert token not in argv
    assert "--token" not in argv
    assert options["env"]["AGENT_PORTAL_TOKEN"] == token
    output = capsys.readouterr().out
    assert token not in output
    assert "AGENT_PORTAL_TOKEN=…" in output


@pytest.fixture
def demo_steps(demo, monkeypatch, tmp_path):
    """Replace every command and server of demo.main with a stand-in that returns what the real one would, so main's own output is checked."""
    setup = {"card": {"model": "CPU demo card", "serial": "CPU-DEMO-0001"}, "reference_lab": {"slug": "reference-lab"},
             "vendor": {"slug": "demo-vendor"}, "staff_user": "staff", "member_user": "vendor", "token": "t" * 40}
    report = {"id": 1, "state": "judged", "card_id": 1, "verdict": {"tracks": {}}}

    def manage(*args, capture=False):
        if args[0] == "demo_setup":
            return json.dumps(setup)
        return json.dumps(report) if capture else ""

    @contextlib.contextmanager
    def server(port):
        yield f"http://127.0.0.1:{port}"

    monkeypatch.setattr(demo, "STATE", tmp_path)
    monkeypatch.setattr(demo, "manage", manage)
    monkeypatch.setattr(demo, "make_key", lambda name: tmp_path / f"{name}.key")
    monkeypatch.setattr(demo, "run_and_pack", lambda label, *args: tmp_path / f"{label}.bundle.tar")
    monkeypatch.setattr(demo, "choose_port", lambda port: port)
    monkeypatch.setattr(demo, "portal_server", server)
    monkeypatch.setattr(demo, "upload_bundle", lambda url, bundle, token: {"id": 1, "url": f"{url}/submissions/1/"})
    monkeypatch.setattr(demo, "issue_certificates", lambda report, setup: [])
    monkeypatch.setattr(demo.os, "environ", {})


@pytest.mark.parametrize("serve", ["yes", "no"])
def test_stop_prints_restart_command(demo, demo_steps, monkeypatch, capsys, serve):
    def interrupt(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo.sys, "argv", ["demo.py", "--port", "8123", "--serve", serve])
    monkeypatch.setattr(demo.time, "sleep", interrupt)

    assert demo.main() == 0

    output = capsys.readouterr().out
    assert "PORTAL_BASE_URL=http://127.0.0.1:8123 .venv/bin/python manage.py runserver 127.0.0.1:8123 --insecure" in output
    assert ("press Ctrl-C to stop it" in output) == (serve == "yes")


def not_planned(criterion_id: str, workload: str) -> CriterionResult:
    return CriterionResult(
        id=criterion_id, workload=workload, metric="fid", status="pending", measured=None, reference=None, bound=None,
        explanation={"zh": "", "en": ""}, hint={"zh": "", "en": ""}, details={"code": "workload_not_run"},
    )


def test_summary_names_unplanned_workloads(demo):
    report = demo_report(not_planned("sd-sft-digits.run_length", "sd-sft-digits"), not_planned("sd-sft.loss_alignment", "sd-sft-digits"),
                         not_planned("sd-infer.throughput", "sd-infer-digits"))
    certificates = [{"track": "finetuning", "number": "PPLM-2026-00001"}, {"track": "inference", "number": "PPLM-2026-00003"}]
    lines = demo.track_lines(report, certificates)
    assert ("  finetuning: certified level 1 (PPLM-2026-00001); level 2 needs workloads that this run did not plan: "
            "sd-sft-digits (profile demo-sd)") in lines
    assert ("  inference: certified level 1 (PPLM-2026-00003); level 2 needs workloads that this run did not plan: "
            "sd-infer-digits (profile demo-sd)") in lines
    assert not any("failing" in line for line in lines if "sd-" in line)


def test_summary_keeps_failing_beside_unplanned(demo):
    report = demo_report(failing("sd-infer-digits.fid", "sd-infer-digits", "fid"), not_planned("sd-sft.loss_alignment", "sd-sft-digits"))
    lines = demo.track_lines(report, [{"track": "inference", "number": "PPLM-2026-00004"}, {"track": "finetuning", "number": "PPLM-2026-00001"}])
    assert "  inference: certified level 1 (PPLM-2026-00004); level 2 not reached, failing: sd-infer-digits.fid (fail)" in lines
    assert ("  finetuning: certified level 1 (PPLM-2026-00001); level 2 needs workloads that this run did not plan: "
            "sd-sft-digits (profile demo-sd)") in lines


def test_every_text_has_chinese(demo):
    tree = ast.parse((ROOT / "scripts" / "demo.py").read_text(encoding="utf-8"))
    texts = {node.args[0].value for node in ast.walk(tree)
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tr" and isinstance(node.args[0], ast.Constant)}
    assert sorted(texts - demo.CHINESE.keys()) == []
    assert sorted(demo.CHINESE.keys() - texts) == []


def test_summary_in_chinese(demo, monkeypatch):
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    report = demo_report(failing("infer-llama.qps_per_tflops", "infer-llama", "qps_per_tflops_ratio"),
                         not_planned("sd-sft.loss_alignment", "sd-sft-digits"))
    lines = demo.track_lines(report, [{"track": "finetuning", "number": "PPLM-2026-00001"}])
    assert lines[0] == "认证方向："
    assert "  finetuning：已认证 1 级（PPLM-2026-00001）；第 2 级需要本次运行未计划的工作负载：sd-sft-digits（配置 demo-sd）" in lines
    assert "  inference：未获认证，未通过：infer-llama.qps_per_tflops (fail)" in lines


def test_main_in_chinese(demo, demo_steps, monkeypatch, capsys):
    monkeypatch.setattr(demo.os, "environ", {"LANG": "zh_CN.UTF-8"})
    calls = []
    show = demo.manage
    monkeypatch.setattr(demo, "manage", lambda *args, capture=False: calls.append(args) or show(*args, capture=capture))
    monkeypatch.setattr(demo.sys, "argv", ["demo.py", "--port", "8123", "--serve", "no"])

    assert demo.main() == 0

    output = capsys.readouterr().out
    assert "== 1/6 门户数据库和演示记录" in output
    assert "== 5/6 评判结果" in output
    assert "门户已停止；用下面的命令再次启动后，上面的地址即可重新访问：" in output
    assert "The portal" not in output
    assert ("show_submission", "1", "--lang", "zh") in calls
