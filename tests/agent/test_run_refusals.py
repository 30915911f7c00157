"""Inputs that `python -m agent run` rejects before anything trains."""

import json
import shutil
from pathlib import Path

import pytest

from agent.cli import main
from agent.errors import EXIT_USAGE, AgentError
from agent.runner import RunRequest, start_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_copy(tmp_path):
    shutil.copytree(REPO / "data", tmp_path / "data")
    return tmp_path


def request(tmp_path, **overrides):
    values = {"profile": "smoke", "out": tmp_path / "run", "resume": False, "data_root": REPO}
    return RunRequest(**{**values, **overrides})


def rejection_code(run_request) -> str:
    with pytest.raises(AgentError) as error:
        start_run(run_request)
    assert error.value.hint
    return error.value.code


def test_unknown_profile(tmp_path):
    assert rejection_code(request(tmp_path, profile="nosuch")) == "profile_not_found"


def test_unknown_profile_exit_code(tmp_path, capsys):
    exit_code = main(["run", "--profile", "nosuch", "--out", str(tmp_path / "run")])

    assert exit_code == EXIT_USAGE
    assert "error[profile_not_found]" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_missing_data_file(data_copy):
    (data_copy / "data" / "sft" / "alpaca_en_demo_dev.json").unlink()

    assert rejection_code(request(data_copy, data_root=data_copy)) == "data_missing"
    assert not (data_copy / "run").exists()


def test_altered_data_file(data_copy):
    with open(data_copy / "data" / "pretrain" / "tinyshakespeare.txt", "a", encoding="utf-8") as stream:
        stream.write("One more line.\n")

    assert rejection_code(request(data_copy, data_root=data_copy)) == "data_checksum_mismatch"


def test_altered_tokenizer(data_copy):
    tokenizer = data_copy / "data" / "tokenizers" / "llama2_tokenizer.model"
    tokenizer.write_bytes(tokenizer.read_bytes()[:-1])

    assert rejection_code(request(data_copy, data_root=data_copy)) == "data_checksum_mismatch"


def test_out_folder_with_another_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"run_id": "other", "profile": "demo"}), encoding="utf-8")

    with pytest.raises(AgentError) as error:
        start_run(request(tmp_path))
    assert error.value.code == "run_folder_not_empty"
    assert "another run" in error.value.message
    assert "--resume" in error.value.hint
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["run_id"] == "other"


def test_out_folder_with_other_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("keep me", encoding="utf-8")

    with pytest.raises(AgentError) as error:
        start_run(request(tmp_path))
    assert error.value.code == "run_folder_not_empty"
    assert "other files" in error.value.message
    # Nothing there to resume, so the hint names only an empty folder.
    assert "--resume" not in error.value.hint
    assert "empty" in error.value.hint


def test_resume_without_run(tmp_path):
    (tmp_path / "run").mkdir()

    assert rejection_code(request(tmp_path, resume=True)) == "run_not_found"


def test_resume_of_other_profile(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run = {"profile": "demo", "rule_pack": {"name": "demo-2026.1", "sha256": "0" * 64}}
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")

    assert rejection_code(request(tmp_path, resume=True)) == "run_mismatch"


def test_out_path_is_a_file(tmp_path):
    out = tmp_path / "afile"
    out.write_text("not a folder", encoding="utf-8")

    with pytest.raises(AgentError) as error:
        start_run(request(tmp_path, out=out))
    assert error.value.code == "run_folder_not_a_folder"
    assert str(out) in error.value.message


@pytest.mark.parametrize("rank", ["0", "1"])
def test_launched_run_without_out(data_copy, monkeypatch, rank):
    # An altered input shows that the rejection comes before any input is hashed.
    with open(data_copy / "data" / "pretrain" / "tinyshakespeare.txt", "a", encoding="utf-8") as stream:
        stream.write("One more line.\n")
    monkeypatch.chdir(data_copy)
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    monkeypatch.setenv("PADDLE_TRAINER_ID", rank)

    with pytest.raises(AgentError) as error:
        start_run(request(data_copy, out=None, data_root=data_copy, overrides={"per_device_train_batch_size": 2}))

    assert error.value.code == "launch_needs_out"
    assert "2 processes" in error.value.message
    assert not (data_copy / "runs").exists()


def test_out_folder_under_a_file(tmp_path):
    (tmp_path / "afile").write_text("not a folder", encoding="utf-8")

    assert rejection_code(request(tmp_path, out=tmp_path / "afile" / "run")) == "run_folder_not_writable"


def test_out_folder_that_cannot_be_made(tmp_path):
    from agent.runner.folder import RunFolder
    from agent.runner.profiles import load_profile
    from certification.rulepack import load_rule_pack

    out = Path("/proc/accel-cert-test/run")
    labels = {"vendor": "v", "card_model": "m", "card_serial": "s"}

    with pytest.raises(AgentError) as error:
        RunFolder.create(out, load_profile("smoke"), load_rule_pack("smoke-2026.1"), labels, ["pretrain-llama"])
    assert error.value.code == "run_folder_not_writable"
    assert str(out) in error.value.message


def test_data_root_that_does_not_exist(tmp_path):
    with pytest.raises(AgentError) as error:
        start_run(request(tmp_path, data_root=tmp_path / "nosuch"))

    assert error.value.code == "data_root_missing"
    assert str(tmp_path / "nosuch") in error.value.message
    assert "data/" in error.value.hint
    assert not (tmp_path / "run").exists()


def test_data_root_one_level_too_deep(data_copy):
    with pytest.raises(AgentError) as error:
        start_run(request(data_copy, data_root=data_copy / "data"))

    assert error.value.code == "data_missing"
    assert f"--data-root {data_copy}" in error.value.hint
    assert "or pass --data-root" not in error.value.hint


def test_data_missing_hint_names_data_root(data_copy):
    (data_copy / "data" / "sft" / "alpaca_en_demo_dev.json").unlink()

    with pytest.raises(AgentError) as error:
        start_run(request(data_copy, data_root=data_copy))

    assert f"which is {data_copy}," in error.value.hint
    assert "data/sft/alpaca_en_demo_dev.json" in error.value.hint


@pytest.fixture
def fail_after_path_checks(monkeypatch):
    """Fail the test when start_run reaches Paddle's import (check_device) or the input digests."""
    def reached(*args, **kwargs):
        pytest.fail("start_run went past the --out checks to Paddle or the input digests")

    monkeypatch.setattr("agent.runner.execute.check_device", reached)
    monkeypatch.setattr("agent.runner.execute.verify_once_per_node", reached)


def test_out_file_rejected_before_paddle(tmp_path, fail_after_path_checks):
    out = tmp_path / "afile"
    out.write_text("not a folder", encoding="utf-8")

    assert rejection_code(request(tmp_path, out=out)) == "run_folder_not_a_folder"


@pytest.mark.parametrize("contents", [[], ["notes.txt"]])
def test_resume_without_run_before_digests(tmp_path, fail_after_path_checks, contents):
    (tmp_path / "run").mkdir()
    for name in contents:
        (tmp_path / "run" / name).write_text("not a run", encoding="utf-8")

    assert rejection_code(request(tmp_path, resume=True)) == "run_not_found"


@pytest.mark.parametrize("value", [",", "", " , ,"])
def test_empty_workload_list(tmp_path, capsys, value):
    exit_code = main(["--lang", "en", "run", "--profile", "smoke", "--out", str(tmp_path / "run"), "--workloads", value])

    error = capsys.readouterr().err
    assert exit_code == EXIT_USAGE
    assert f"error[workloads_empty]: --workloads {value!r} names no workload" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("level", ["-1", "99999999999999999999"])
def test_profile_level_not_in_pack(tmp_path, capsys, level):
    profile = (REPO / "agent" / "profiles" / "smoke.yaml").read_text(encoding="utf-8")
    path = tmp_path / "levels.yaml"
    path.write_text(profile.replace("level: 1", f"level: {level}"), encoding="utf-8")

    exit_code = main(["run", "--profile", str(path), "--out", str(tmp_path / "run")])

    assert exit_code == EXIT_USAGE
    assert f"error[level_not_defined]: track 'pretraining' has no level {level}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", [b"rule_pack: [\n", b"rule_pack: \xff\n"])
def test_profile_file_invalid(tmp_path, capsys, content):
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)

    exit_code = main(["run", "--profile", str(path), "--out", str(tmp_path / "run")])

    assert exit_code == EXIT_USAGE
    assert "error[profile_invalid]" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--out", "--data-root"])
def test_empty_path_option(tmp_path, capsys, monkeypatch, option):
    monkeypatch.chdir(tmp_path)

    exit_code = main(["--lang", "en", "run", "--profile", "smoke", option, ""])

    assert exit_code == EXIT_USAGE
    assert f"error[option_empty]: {option} is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--vendor", "--card-model", "--card-serial"])
@pytest.mark.parametrize(("value", "code"), [("", "option_empty"), (" ", "option_empty"), ("a\nb", "option_control_character"),
                                             ("a\x1b[31mb", "option_control_character"), ("a\tb", "option_control_character")])
def test_name_option_rejected(tmp_path, capsys, option, value, code):
    exit_code = main(["--lang", "en", "run", "--profile", "smoke", "--out", str(tmp_path / "run"), option, value])

    error = capsys.readouterr().err
    assert exit_code == EXIT_USAGE
    assert f"error[{code}]: {option} " in error
    assert not (tmp_path / "run").exists()


def test_control_character_named_in_chinese(tmp_path, capsys):
    exit_code = main(["--lang", "zh", "run", "--profile", "smoke", "--out", str(tmp_path / "run"), "--card-serial", "a\nb"])

    assert exit_code == EXIT_USAGE
    assert "--card-serial 'a\\nb' 含有控制字符 '\\n'" in capsys.readouterr().err
