"""`python -m agent check`: the input digests of both runs and the reference used, in the text output and the HTML report."""

import json

from agent.cli import main
from agent.errors import EXIT_REJECTED, EXIT_VERDICT_FAILED
from certification.bundle import write_bundle
from certification.signing import generate_key, save_public_key
from tests.certification.runfolder import PACK, build_run
from tests.certification.test_verdict_inputs import OTHER, set_digest

LAMBADA_PIN = PACK.data["datasets"]["lambada"]["sha256"]


def write_run(tmp_path, name, key, lambada=None):
    """Write a signed bundle of a run whose LAMBADA file had `lambada` as sha256 (None: the pack's file)."""
    run_dir = build_run(tmp_path / name)
    if lambada is not None:
        set_digest(run_dir, "dataset lambada", lambada)
    return str(write_bundle(run_dir, tmp_path / f"{name}.tar", key).path)


def check_arguments(tmp_path, vendor_lambada=None, reference_lambadas=(None,)):
    key = generate_key()
    save_public_key(key, tmp_path / "key.pub")
    arguments = ["check", write_run(tmp_path, "vendor", key, vendor_lambada)]
    for number, lambada in enumerate(reference_lambadas):
        arguments += ["--reference", write_run(tmp_path, f"reference-{number}", key, lambada)]
    return arguments + ["--public-key", str(tmp_path / "key.pub"), "--peak", "fp32=1", "--reference-peak", "fp32=1"]


def candidate_ids(json_output):
    """Return the reference bundle ids that could serve pretrain-llama, in the order given, from `check --json`."""
    verdict = json.loads(json_output)
    return verdict["inputs"]["pretrain-llama"]["reference_choice"]["candidates"]


def test_text_lists_equal_inputs(tmp_path, capsys):
    main(check_arguments(tmp_path) + ["--lang", "en"])

    output = capsys.readouterr().out
    assert "Inputs compared with the reference (sha256, first 12 hex digits):" in output
    lambada = f"[equal] dataset lambada: vendor {LAMBADA_PIN[:12]}, reference {LAMBADA_PIN[:12]}, rule pack {LAMBADA_PIN[:12]}"
    assert lambada in output
    assert "[equal] tokenizer llama2:" in output
    assert "is the only reference that contains workload pretrain-llama." in output


def test_text_shows_differing_digest(tmp_path, capsys):
    code = main(check_arguments(tmp_path, vendor_lambada=OTHER) + ["--lang", "en"])

    output = capsys.readouterr().out
    assert code == EXIT_VERDICT_FAILED
    lambada = f"[no: the digests differ] dataset lambada: vendor {OTHER[:12]}, reference {LAMBADA_PIN[:12]}, rule pack {LAMBADA_PIN[:12]}"
    assert lambada in output


def test_text_in_chinese(tmp_path, capsys):
    main(check_arguments(tmp_path, vendor_lambada=OTHER) + ["--lang", "zh"])

    output = capsys.readouterr().out
    assert "与参考比较的输入（sha256，前 12 位十六进制）：" in output
    assert f"[否：摘要不同] 数据集 lambada: 厂商 {OTHER[:12]}，参考 {LAMBADA_PIN[:12]}，规则包 {LAMBADA_PIN[:12]}" in output
    assert "[相同] 分词器 llama2:" in output
    assert "是唯一包含工作负载 pretrain-llama 的参考。" in output


def test_text_names_matching_reference(tmp_path, capsys):
    arguments = check_arguments(tmp_path, reference_lambadas=(OTHER, None))
    main(arguments + ["--json"])
    off_pin, matching = candidate_ids(capsys.readouterr().out)

    main(arguments + ["--lang", "en"])

    output = capsys.readouterr().out
    choice = next(line for line in output.splitlines() if line.startswith("  pretrain-llama: "))
    assert f"2 reference bundles contain workload pretrain-llama; {matching} is the first of them whose input digests all equal" in choice
    assert off_pin not in choice
    assert "[PASS] pretrain.lambada" in output


def test_html_shows_inputs_table(tmp_path, capsys):
    out = tmp_path / "report"

    main(check_arguments(tmp_path, vendor_lambada=OTHER) + ["--lang", "en", "--html", str(out)])

    page = (out / "index.html").read_text(encoding="utf-8")
    section = page[page.index('<h2 id="inputs">'):]
    assert "Inputs compared with the reference" in section
    assert f'<code title="{OTHER}">{OTHER[:12]}</code>' in section
    assert f'<code title="{LAMBADA_PIN}">{LAMBADA_PIN[:12]}</code>' in section
    assert '<tr class="input-different">' in section
    assert '<span class="other-input">no: the digests differ</span>' in section
    assert "dataset <code>lambada</code>" in section
    assert "is the only reference that contains workload pretrain-llama." in section


def test_html_inputs_in_chinese(tmp_path, capsys):
    out = tmp_path / "report"

    main(check_arguments(tmp_path) + ["--lang", "zh", "--html", str(out)])

    page = (out / "index.html").read_text(encoding="utf-8")
    assert "与参考比较的输入" in page
    assert "厂商 sha256" in page
    assert "数据集 <code>lambada</code>" in page
    assert '<span class="same-input">相同</span>' in page
    assert "否：" not in page


def test_missing_reference_key_hint(tmp_path, capsys):
    vendor_key, reference_key = generate_key(), generate_key()
    save_public_key(vendor_key, tmp_path / "vendor.pub")
    vendor = write_run(tmp_path, "vendor", vendor_key)
    reference = write_run(tmp_path, "reference", reference_key)

    code = main(["--lang", "en", "check", vendor, "--reference", reference, "--public-key", str(tmp_path / "vendor.pub"),
                 "--peak", "fp32=1", "--reference-peak", "fp32=1"])

    error = capsys.readouterr().err
    assert code == EXIT_REJECTED
    assert f"error[signature_key_unknown]: bundle {reference}:" in error
    assert "pass the reference lab's public key file (.pub) with another --public-key option" in error
    assert "register the vendor's public key" not in error
