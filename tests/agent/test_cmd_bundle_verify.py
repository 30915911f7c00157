import os
import signal

import pytest

import agent.commands.bundle
from agent.cli import main
from agent.errors import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, AgentError
from agent.runner.lock import lock_leader
from certification.bundle import write_bundle
from tests.certification.runfolder import build_run


def make_key(tmp_path, name="vendor.key"):
    path = tmp_path / name
    assert main(["keygen", "--out", str(path)]) == EXIT_OK
    return path


def test_bundle_then_verify(tmp_path, capsys):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("sft-llama",), planned=("sft-llama",))

    assert main(["bundle", str(run_dir), "--key", str(key)]) == EXIT_OK
    bundle = tmp_path / "run.bundle.tar"
    assert bundle.is_file()

    code = main(["verify", str(bundle), "--public-key", str(key) + ".pub"])

    output = capsys.readouterr().out
    assert code == EXIT_OK
    assert "sft-llama" in output


def test_verify_accepts_several_keys(tmp_path):
    key = make_key(tmp_path)
    other = make_key(tmp_path, "other.key")
    run_dir = build_run(tmp_path / "run", workloads=(), planned=())
    out = tmp_path / "out.tar"
    assert main(["bundle", str(run_dir), "--key", str(key), "--out", str(out)]) == EXIT_OK

    code = main(["verify", str(out), "--public-key", f"{other}.pub", "--public-key", f"{key}.pub"])

    assert code == EXIT_OK


def test_verify_rejects_unknown_key(tmp_path, capsys):
    key = make_key(tmp_path)
    other = make_key(tmp_path, "other.key")
    run_dir = build_run(tmp_path / "run", workloads=(), planned=())
    out = tmp_path / "out.tar"
    main(["bundle", str(run_dir), "--key", str(key), "--out", str(out)])

    code = main(["verify", str(out), "--public-key", f"{other}.pub"])

    assert code == EXIT_REJECTED
    assert "signature_key_unknown" in capsys.readouterr().err


def test_verify_rejects_changed_byte(tmp_path, capsys):
    key = make_key(tmp_path)
    out = tmp_path / "out.tar"
    main(["bundle", str(build_run(tmp_path / "run", workloads=(), planned=())), "--key", str(key), "--out", str(out)])
    data = bytearray(out.read_bytes())
    data[600] ^= 0x20
    out.write_bytes(bytes(data))

    code = main(["verify", str(out), "--public-key", f"{key}.pub"])

    assert code == EXIT_REJECTED


def test_verify_missing_bundle_is_usage_error(tmp_path, capsys):
    key = make_key(tmp_path)

    code = main(["verify", str(tmp_path / "absent.tar"), "--public-key", f"{key}.pub"])

    assert code == EXIT_USAGE
    assert "archive_unreadable" in capsys.readouterr().err


def test_bundle_rejects_bare_nan(tmp_path, capsys):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=(), planned=())
    (run_dir / "environment.json").write_text('{"x": NaN}')

    code = main(["bundle", str(run_dir), "--key", str(key)])

    assert code == EXIT_REJECTED
    assert "json_non_finite" in capsys.readouterr().err


@pytest.mark.parametrize(("language", "sentence"), [
    ("en", "cannot read the run folder file {path}: the path is a folder, not a file (EISDIR)"),
    ("zh", "无法读取运行目录中的文件 {path}：该路径是文件夹，不是文件（EISDIR）"),
])
def test_bundle_names_unreadable_run_json(tmp_path, capsys, language, sentence):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=(), planned=())
    (run_dir / "run.json").unlink()
    (run_dir / "run.json").mkdir()

    code = main(["--lang", language, "bundle", str(run_dir), "--key", str(key)])

    error = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[run_file_unreadable]" in error
    assert sentence.format(path=run_dir / "run.json") in error


def test_bundle_missing_key_is_usage_error(tmp_path, capsys):
    run_dir = build_run(tmp_path / "run", workloads=(), planned=())

    code = main(["bundle", str(run_dir), "--key", str(tmp_path / "absent.key")])

    assert code == EXIT_USAGE
    assert "key_file_unreadable" in capsys.readouterr().err


def test_bundle_keeps_existing_file(tmp_path, capsys):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run")
    out = tmp_path / "run.tar"
    assert main(["bundle", str(run_dir), "--key", str(key), "--out", str(out)]) == EXIT_OK
    first = out.read_bytes()

    code = main(["bundle", str(run_dir), "--key", str(key), "--out", str(out)])

    assert code == EXIT_USAGE
    assert "error[bundle_file_exists]" in capsys.readouterr().err
    assert out.read_bytes() == first
    assert main(["bundle", str(run_dir), "--key", str(key), "--out", str(out), "--force"]) == EXIT_OK
    assert out.read_bytes() != first


def test_bundle_warns_about_failed_workloads(tmp_path, capsys):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("sft-llama",), planned=("sft-llama",))
    result = run_dir / "workloads" / "sft-llama" / "result.json"
    result.write_text(result.read_text().replace('"completed"', '"failed"'))

    code = main(["bundle", str(run_dir), "--key", str(key)])

    err = capsys.readouterr().err
    assert code == EXIT_OK
    assert "warning: workloads that failed" in err
    assert "sft-llama" in err


def test_bundle_without_failures_has_no_warning(tmp_path, capsys):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("sft-llama",), planned=("sft-llama",))

    assert main(["bundle", str(run_dir), "--key", str(key)]) == EXIT_OK
    assert "warning" not in capsys.readouterr().err


def test_bundle_rejects_locked_run(tmp_path, capsys, lock_holders):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("sft-llama",), planned=("sft-llama",))
    holder = lock_holders(run_dir, job=None)

    code = main(["bundle", str(run_dir), "--key", str(key)])

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[run_folder_busy]" in err
    assert f"process {holder.pid} on " in err
    assert str(run_dir) in err
    assert not (tmp_path / "run.bundle.tar").exists()


def test_bundle_accepts_run_after_lock_ends(tmp_path, capsys, lock_holders):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("sft-llama",), planned=("sft-llama",))
    holder = lock_holders(run_dir, job=None)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)

    code = main(["bundle", str(run_dir), "--key", str(key)])

    assert code == EXIT_OK, capsys.readouterr().err
    assert (run_dir / "run.lock").is_file()
    assert (tmp_path / "run.bundle.tar").is_file()


def test_bundle_holds_lock_while_packing(tmp_path, capsys, monkeypatch):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("sft-llama",), planned=("sft-llama",))
    (run_dir / "run.lock").write_text("", encoding="utf-8")
    resumed: list[str] = []

    def pack_while_a_run_starts(*args):
        # A run that starts on the folder in the middle of packing, as `python -m agent run --resume` would.
        try:
            lock_leader(run_dir, launched=False).release()
            resumed.append("locked")
        except AgentError as error:
            resumed.append(error.code)
        return write_bundle(*args)

    monkeypatch.setattr(agent.commands.bundle, "write_bundle", pack_while_a_run_starts)
    code = main(["bundle", str(run_dir), "--key", str(key)])

    assert code == EXIT_OK, capsys.readouterr().err
    assert resumed == ["run_folder_busy"]
    # The lock goes with the command, so a run may start once the folder is packed.
    lock_leader(run_dir, launched=False).release()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_bundle_accepts_read_only_lock_file(tmp_path, capsys):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=(), planned=())
    lock_file = run_dir / "run.lock"
    lock_file.write_text("", encoding="utf-8")
    lock_file.chmod(0o444)

    code = main(["bundle", str(run_dir), "--key", str(key)])

    assert code == EXIT_OK, capsys.readouterr().err


@pytest.mark.parametrize(("language", "sentence", "hint"), [
    ("en", "run {path} is not finished: 2 workloads of its plan have no result yet: lora-llama, infer-llama",
     "python -m agent run --profile cpu-demo --resume --out {path}"),
    ("zh", "运行 {path} 尚未完成：计划中有 2 个工作负载还没有结果：lora-llama, infer-llama",
     "python -m agent run --profile cpu-demo --resume --out {path}"),
])
def test_bundle_rejects_unfinished_run(tmp_path, capsys, language, sentence, hint):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("pretrain-llama", "sft-llama"))
    capsys.readouterr()

    code = main(["--lang", language, "bundle", str(run_dir), "--key", str(key)])

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[run_unfinished]" in err
    assert sentence.format(path=run_dir) in err
    assert hint.format(path=run_dir) in err
    assert "--partial" in err
    assert not (tmp_path / "run.bundle.tar").exists()


def test_bundle_counts_stopped_workload_unfinished(tmp_path, capsys):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run")
    # A workload stopped by Ctrl-C keeps its folder and step log but never writes result.json.
    (run_dir / "workloads" / "infer-llama" / "result.json").unlink()

    code = main(["bundle", str(run_dir), "--key", str(key)])

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "error[run_unfinished]" in err
    assert "1 workload of its plan has no result yet: infer-llama" in err


def test_bundle_partial_packs_unfinished_run(tmp_path, capsys):
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("pretrain-llama", "sft-llama", "lora-llama"))
    capsys.readouterr()

    code = main(["bundle", str(run_dir), "--key", str(key), "--partial"])

    err = capsys.readouterr().err
    assert code == EXIT_OK, err
    assert (tmp_path / "run.bundle.tar").is_file()
    assert "warning: packed a partial run: workloads that have not finished: infer-llama" in err
    assert "public history lists this submission" in err


def test_bundle_accepts_run_of_workload_subset(tmp_path, capsys):
    # `run --workloads` records only the chosen workloads as the plan, so such a run is finished when they are.
    key = make_key(tmp_path)
    run_dir = build_run(tmp_path / "run", workloads=("sft-llama",), planned=("sft-llama",))

    code = main(["bundle", str(run_dir), "--key", str(key)])

    assert code == EXIT_OK, capsys.readouterr().err
