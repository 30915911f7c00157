"""Run one certification end to end on this machine, as staff and a vendor would.

The portal runs on SQLite with Celery run eagerly. The agent runs the CPU
demo profile twice: once as the reference lab (staff mark that bundle as the
reference of the demo rule pack) and once as the demo vendor, whose bundle is
uploaded over HTTP, verified and judged. Staff then issue a certificate for
every (card, track, level) the verdict passes. Every step calls the same
commands a person would type; state lives in var/demo/.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The agent of this checkout, as `python -m agent` from ROOT runs it, even where the virtual environment installs another one.
sys.path.insert(0, str(ROOT))

from agent.gaps import split_gap, unplanned_text  # noqa: E402
from agent.i18n import choose_language  # noqa: E402
STATE = ROOT / "var" / "demo"
PROFILE = "demo"
RULE_PACK = "demo-2026.1"
# Peak dense FP32 TFLOPS registered for the demo CPU "cards". The ratio
# criterion divides both sides by the same kind of figure, so on one machine
# only the ratio matters; 1.0 keeps tokens/s/TFLOPS readable.
CPU_PEAK_TFLOPS = "fp32=1.0"
# demo_setup's default password for the demo staff and vendor accounts.
DEMO_PASSWORD = "demo-password"


# Chinese texts of the demo's own output, keyed by the English text. The agent's catalogue is not used, so that
# the demo's sentences stay out of the agent's messages. Placeholders are filled after the lookup.
CHINESE = {
    "demo: the command above failed with exit code {code}": "演示：上面的命令失败，退出码 {code}",
    "demo: expected a JSON line in the command output, got:\n{output}": "演示：命令输出中应有一行 JSON，实际输出：\n{output}",
    "reusing {path} (delete var/demo to run it again)": "复用 {path}（删除 var/demo 即可重新运行）",
    "demo: {folder} contains files but no run.json, so it is not a run the agent can continue; "
    "delete {folder} and run the demo again":
        "演示：{folder} 中有文件但没有 run.json，不是代理程序能继续的运行；请删除 {folder} 后重新运行演示",
    "demo: {folder} contains a run with other settings ({differences}), "
    "so the agent cannot continue it; delete {folder} and run the demo again":
        "演示：{folder} 中的运行设置不同（{differences}），代理程序无法继续它；请删除 {folder} 后重新运行演示",
    "demo: {folder} contains a run that an earlier demo started and did not pack; continuing it with --resume, "
    "which skips the workloads it completed (delete {folder} to start that run again)":
        "演示：{folder} 中有之前的演示开始但尚未打包的运行；现用 --resume 继续，跳过已完成的工作负载（删除 {folder} 可重新开始该运行）",
    "demo: port {requested} is in use, so this portal runs on port {port}. Certificates issued by an earlier demo "
    "keep, in their PDFs and signed credentials, the links of the port they were issued on (such as {requested}); "
    "the summary names them. Stop the other server and run the demo with --port {requested} to keep one address.":
        "演示：端口 {requested} 已被占用，本次门户运行在端口 {port}。之前的演示签发的证书在其 PDF 和签名凭证中保留签发时端口"
        "（例如 {requested}）的链接，摘要会列出它们。停止另一个服务器并以 --port {requested} 运行演示，即可保持同一地址。",
    "demo: the portal exited early; see {path}": "演示：门户提前退出；请查看 {path}",
    "demo: the portal did not listen on port {port} within {seconds:.0f} s": "演示：门户未在 {seconds:.0f} 秒内监听端口 {port}",
    "1/6 portal database and demo records": "1/6 门户数据库和演示记录",
    "2/6 reference run: the demo profile as the reference lab (CPU demo, not A800)":
        "2/6 参考运行：以参考实验室身份运行 demo 配置（CPU 演示，不是 A800）",
    "3/6 vendor run: the demo profile as the demo vendor": "3/6 厂商运行：以演示厂商身份运行 demo 配置",
    "4/6 upload to the portal at {url}": "4/6 上传到门户 {url}",
    "5/6 verdict": "5/6 评判结果",
    "6/6 certificates for every passing track and level": "6/6 为每个通过的认证方向和级别签发证书",
    "The portal has stopped, so the addresses above work again once you start it with:":
        "门户已停止；用下面的命令再次启动后，上面的地址即可重新访问：",
    "The portal keeps running; press Ctrl-C to stop it.": "门户继续运行；按 Ctrl-C 停止。",
    "demo: submission {id} was {state}: {message}": "演示：提交 {id} 的状态为 {state}：{message}",
    "demo: no track passed, so no certificate was issued; the lines above name the failing criteria":
        "演示：没有认证方向通过，因此未签发证书；上面各行列出了未通过的判据",
    "Tracks:": "认证方向：",
    "; ": "；",
    "{track}: no requirements in this rule pack": "{track}：本规则包对它没有要求",
    "{track}: certified level {level} ({number})": "{track}：已认证 {level} 级（{number}）",
    "level {level} not reached, failing: {criteria}": "未达到 {level} 级，未通过：{criteria}",
    "{track}: not certified, failing: {criteria}": "{track}：未获认证，未通过：{criteria}",
    "no criterion (see the verdict above)": "无判据（见上面的评判结果）",
    "{track}: not certified": "{track}：未获认证",
    "track {track} at level {level} (it reached level {reached})": "认证方向 {track} 的 {level} 级（它达到了 {reached} 级）",
    "Done in {minutes:.1f} minutes after set-up. The reference is a CPU demo run, not an A800 result.":
        "安装之后用时 {minutes:.1f} 分钟完成。参考结果是 CPU 演示运行，不是 A800 的结果。",
    "verdict:        {url}  (log in as {user} / {password})": "评判结果：{url}（登录账号 {user} / {password}）",
    "public listing: {url}": "公开列表：{url}",
    "certificate {number} ({track} level {level}):": "证书 {number}（{track} {level} 级）：",
    "page: {url}": "页面：{url}",
    "PDF:  {url}  (saved as {path})": "PDF：{url}（已保存为 {path}）",
    "issued by an earlier demo: its PDF and signed credential keep the link {url}": "由之前的演示签发：其 PDF 和签名凭证保留链接 {url}",
    "staff queue:    {url}  (log in as {user} / {password})": "工作人员队列：{url}（登录账号 {user} / {password}）",
}


def tr(text: str) -> str:
    """Return `text` in the agent's language, which agent.i18n takes from LC_ALL, LC_MESSAGES, then LANG (zh_* gives Chinese)."""
    return CHINESE.get(text, text) if choose_language() == "zh" else text


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def command(*args: str | Path, capture: bool = False, secret_env: dict[str, str] | None = None) -> str:
    """Run one command of the product from the project root; stop the demo if it fails.

    `secret_env` adds environment variables for the command only, such as the API token,
    which stay out of its command line (visible in ps) and out of the printed line.
    """
    argv = [str(arg) for arg in args]
    hidden_values = " ".join(f"{name}=…" for name in secret_env or {})
    print("$ " + (hidden_values + " " if hidden_values else "") + " ".join(argv), flush=True)
    env = {**os.environ, **secret_env} if secret_env else None
    result = subprocess.run(argv, cwd=ROOT, text=True, stdout=subprocess.PIPE if capture else None, env=env)
    if result.returncode != 0:
        sys.exit(tr("demo: the command above failed with exit code {code}").format(code=result.returncode))
    return result.stdout if capture else ""


def agent(*args: str | Path, capture: bool = False, secret_env: dict[str, str] | None = None) -> str:
    return command(sys.executable, "-m", "agent", *args, capture=capture, secret_env=secret_env)


def manage(*args: str | Path, capture: bool = False) -> str:
    return command(sys.executable, "manage.py", *args, capture=capture)


def last_json_line(output: str) -> dict:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(tr("demo: expected a JSON line in the command output, got:\n{output}").format(output=output))


def make_key(name: str) -> Path:
    key = STATE / "keys" / f"{name}.key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        agent("keygen", "--out", key)
    return key


def run_and_pack(label: str, key: Path, vendor: str, card_model: str, card_serial: str) -> Path:
    """Run the demo profile into var/demo/runs/LABEL and pack it, reusing a finished bundle."""
    run_dir = STATE / "runs" / label
    bundle = STATE / f"{label}.bundle.tar"
    if bundle.exists():
        print(tr("reusing {path} (delete var/demo to run it again)").format(path=bundle.relative_to(ROOT)))
        return bundle
    labels = {"vendor": vendor, "card_model": card_model, "card_serial": card_serial}
    resume = ["--resume"] if earlier_run(run_dir, labels) else []
    agent("run", "--profile", PROFILE, "--out", run_dir,
          "--vendor", vendor, "--card-model", card_model, "--card-serial", card_serial, *resume)
    agent("bundle", run_dir, "--key", key, "--out", bundle)
    return bundle


def earlier_run(run_dir: Path, labels: dict[str, str]) -> bool:
    """Return True when `run_dir` contains a run of this demo that has no bundle yet, so the agent continues it.

    Such a run was stopped before its bundle was packed, such as by Ctrl-C.
    Return False when the folder is missing or empty. Stop the demo, and keep
    the folder, when it contains other files or a run with other settings,
    because the agent would reject both.
    """
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return False
    folder = run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        sys.exit(tr("demo: {folder} contains files but no run.json, so it is not a run the agent can continue; "
                    "delete {folder} and run the demo again").format(folder=folder))
    differences = run_differences(json.loads(run_json.read_text(encoding="utf-8")), labels)
    if differences:
        sys.exit(tr("demo: {folder} contains a run with other settings ({differences}), "
                    "so the agent cannot continue it; delete {folder} and run the demo again").format(
                     folder=folder, differences="; ".join(differences)))
    print(tr("demo: {folder} contains a run that an earlier demo started and did not pack; continuing it with --resume, "
             "which skips the workloads it completed (delete {folder} to start that run again)").format(folder=folder), flush=True)
    return True


def run_differences(run: dict, labels: dict[str, str]) -> list[str]:
    """Compare a run.json with this demo's run and return each setting that differs as "NAME: RECORDED, not EXPECTED"."""
    pack_path = ROOT / "certification" / "rulepacks" / f"{RULE_PACK}.yaml"
    expected = {
        "profile": PROFILE,
        "rule pack": f"{RULE_PACK} ({hashlib.sha256(pack_path.read_bytes()).hexdigest()[:12]})",
        "vendor": labels["vendor"],
        "card model": labels["card_model"],
        "card serial": labels["card_serial"],
        "--set values": "none",
    }
    pack = run.get("rule_pack") or {}
    card = run.get("card") or {}
    recorded = {
        "profile": run.get("profile"),
        "rule pack": f"{pack.get('name')} ({str(pack.get('sha256'))[:12]})",
        "vendor": run.get("vendor"),
        "card model": card.get("model"),
        "card serial": card.get("serial"),
        "--set values": json.dumps(run["overrides"], sort_keys=True) if run.get("overrides") else "none",
    }
    return [f"{name}: {recorded[name]}, not {value}" for name, value in expected.items() if recorded[name] != value]


def choose_port(requested: int) -> int:
    """Return `requested` when nothing listens on it, otherwise a free port, and print a line when the port moves."""
    port = free_port(requested)
    if port != requested:
        print(port_moved_note(requested, port), flush=True)
    return port


def port_moved_note(requested: int, port: int) -> str:
    return tr(
        "demo: port {requested} is in use, so this portal runs on port {port}. Certificates issued by an earlier demo "
        "keep, in their PDFs and signed credentials, the links of the port they were issued on (such as {requested}); "
        "the summary names them. Stop the other server and run the demo with --port {requested} to keep one address."
    ).format(requested=requested, port=port)


def free_port(preferred: int) -> int:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def portal_server(port: int):
    """Serve the portal on 127.0.0.1:PORT with Django's development server."""
    log = open(STATE / "portal.log", "a")
    server = subprocess.Popen(
        # --insecure serves the CSS although DEBUG is off, as it is by default.
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        # The certificate's QR code and link point at this server.
        env={**os.environ, "PORTAL_BASE_URL": f"http://127.0.0.1:{port}"},
    )
    try:
        wait_for_port(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def wait_for_port(port: int, server: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(tr("demo: the portal exited early; see {path}").format(path=STATE / "portal.log"))
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(tr("demo: the portal did not listen on port {port} within {seconds:.0f} s").format(port=port, seconds=timeout))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="port for the portal on 127.0.0.1 (default 8000)")
    parser.add_argument("--serve", choices=["auto", "yes", "no"], default="auto",
                        help="keep serving the portal after the job until Ctrl-C; auto: only on a terminal")
    return parser.parse_args()


def main() -> int:
    options = parse_arguments()
    started = time.monotonic()
    STATE.mkdir(parents=True, exist_ok=True)

    step(tr("1/6 portal database and demo records"))
    manage("migrate", "--no-input", "-v", "0")
    reference_key = make_key("reference-lab")
    vendor_key = make_key("vendor")
    setup = json.loads(manage(
        "demo_setup", "--vendor-key", f"{vendor_key}.pub",
        "--reference-key", f"{reference_key}.pub", capture=True,
    ))
    card = setup["card"]

    step(tr("2/6 reference run: the demo profile as the reference lab (CPU demo, not A800)"))
    reference = run_and_pack("reference", reference_key, setup["reference_lab"]["slug"], card["model"], "reference-cpu-0")
    manage("add_reference", reference, "--rule-pack", RULE_PACK, "--peak", CPU_PEAK_TFLOPS, "--staff-user", setup["staff_user"])

    step(tr("3/6 vendor run: the demo profile as the demo vendor"))
    vendor = run_and_pack("vendor", vendor_key, setup["vendor"]["slug"], card["model"], card["serial"])

    port = choose_port(options.port)
    # issue_certificate signs the certificate's public link into the credential, so every
    # manage.py command from here on needs the same base URL as the server.
    os.environ["PORTAL_BASE_URL"] = f"http://127.0.0.1:{port}"
    with portal_server(port) as url:
        step(tr("4/6 upload to the portal at {url}").format(url=url))
        upload = upload_bundle(url, vendor, setup["token"])

        step(tr("5/6 verdict"))
        manage("show_submission", str(upload["id"]), "--lang", choose_language())
        report = last_json_line(manage("show_submission", str(upload["id"]), "--json", capture=True))

        step(tr("6/6 certificates for every passing track and level"))
        certificates = [download_pdf(url, item) for item in issue_certificates(report, setup)]
        print_summary(url, upload, certificates, setup, time.monotonic() - started)
        print("\n".join(track_lines(report, certificates)))
        if options.serve == "yes" or (options.serve == "auto" and sys.stdin.isatty()):
            serve_until_interrupted()
    # Printed after Ctrl-C too, so that both --serve choices end with the command that serves the portal again.
    print("\n" + tr("The portal has stopped, so the addresses above work again once you start it with:"))
    print(f"  {restart_command(port)}")
    return 0


def serve_until_interrupted() -> None:
    print("\n" + tr("The portal keeps running; press Ctrl-C to stop it."), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def upload_bundle(url: str, bundle: Path, token: str) -> dict:
    """Upload the vendor bundle with `agent upload`, passing the API token in AGENT_PORTAL_TOKEN, and return the portal's reply."""
    return last_json_line(agent("upload", bundle, "--portal", url, "--json", capture=True, secret_env={"AGENT_PORTAL_TOKEN": token}))


def restart_command(port: int) -> str:
    """Return the shell command that serves the portal again with the address the certificates were issued for."""
    return f"PORTAL_BASE_URL=http://127.0.0.1:{port} .venv/bin/python manage.py runserver 127.0.0.1:{port} --insecure"


def issue_certificates(report: dict, setup: dict) -> list[dict]:
    if report["state"] != "judged":
        sys.exit(tr("demo: submission {id} was {state}: {message}").format(id=report["id"], state=report["state"], message=report["error_message"]))
    issued = []
    for track, outcome in report["verdict"]["tracks"].items():
        if outcome.get("level", 0) < 1:
            continue
        output = manage("issue_certificate", "--card", str(report["card_id"]), "--track", track,
                        "--level", str(outcome["level"]), "--staff-user", setup["staff_user"],
                        "--existing-ok", "--json", capture=True)
        issued.append(last_json_line(output))
    if not issued:
        print("\n".join(track_lines(report, [])))
        sys.exit(tr("demo: no track passed, so no certificate was issued; the lines above name the failing criteria"))
    return issued


def track_lines(report: dict, certificates: list[dict]) -> list[str]:
    """Return one line per track of the verdict: the certificate issued for it, the criteria that failed,
    and the workloads of the next level that the demo profile does not plan."""
    numbers = {certificate["track"]: certificate["number"] for certificate in certificates}
    lines = [tr("Tracks:")]
    for track, outcome in report["verdict"]["tracks"].items():
        ran, unplanned = split_gap(outcome.get("gap", []))
        failing = ", ".join(gap_text(item) for item in ran)
        if outcome.get("max_level", 1) == 0:
            line = "  " + tr("{track}: no requirements in this rule pack").format(track=track)
        elif track in numbers:
            line = "  " + tr("{track}: certified level {level} ({number})").format(track=track, level=outcome["level"], number=numbers[track])
            if failing:
                line += tr("; ") + tr("level {level} not reached, failing: {criteria}").format(level=outcome["level"] + 1, criteria=failing)
        elif failing or not unplanned:
            line = "  " + tr("{track}: not certified, failing: {criteria}").format(
                track=track, criteria=failing or tr("no criterion (see the verdict above)"))
        else:
            line = "  " + tr("{track}: not certified").format(track=track)
        if unplanned:
            line += tr("; ") + unplanned_text(outcome["gap"][0]["level"], unplanned, RULE_PACK, choose_language())
        lines.append(line)
    return lines


def gap_text(item: dict) -> str:
    """Return what one entry of a track's `gap` in the verdict misses: a criterion with its status, or a required track."""
    if "criterion" in item:
        return f"{item['criterion']} ({item['status']})"
    return tr("track {track} at level {level} (it reached level {reached})").format(
        track=item["requires_track"], level=item["level"], reached=item["reached"])


def download_pdf(url: str, certificate: dict) -> dict:
    """Fetch the certificate PDF from the running portal, as a visitor would, into var/demo."""
    path = STATE / "certificates" / f"{certificate['number']}.pdf"
    path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url + certificate["pdf_url"], timeout=60) as response:
        path.write_bytes(response.read())
    return {**certificate, "pdf_path": path.relative_to(ROOT)}


def print_summary(url: str, upload: dict, certificates: list[dict], setup: dict, seconds: float) -> None:
    print("\n" + tr("Done in {minutes:.1f} minutes after set-up. The reference is a CPU demo run, not an A800 result.").format(minutes=seconds / 60))
    print("  " + tr("verdict:        {url}  (log in as {user} / {password})").format(url=upload["url"], user=setup["member_user"], password=DEMO_PASSWORD))
    print("  " + tr("public listing: {url}").format(url=f"{url}/"))
    for certificate in certificates:
        print("  " + tr("certificate {number} ({track} level {level}):").format(
            number=certificate["number"], track=certificate["track"], level=certificate["level"]))
        print("      " + tr("page: {url}").format(url=url + certificate["verify_url"]))
        print("      " + tr("PDF:  {url}  (saved as {path})").format(url=url + certificate["pdf_url"], path=certificate["pdf_path"]))
        signed = certificate.get("credential_url", "")
        if signed and not signed.startswith(url + "/"):
            print("      " + tr("issued by an earlier demo: its PDF and signed credential keep the link {url}").format(url=signed))
    print("  " + tr("staff queue:    {url}  (log in as {user} / {password})").format(
        url=f"{url}/staff/queue/", user=setup["staff_user"], password=DEMO_PASSWORD))


if __name__ == "__main__":
    sys.exit(main())
