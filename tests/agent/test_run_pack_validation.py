"""`python -m agent run` validates the whole rule pack before it hashes inputs or imports Paddle."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.commands.validate_pack import check_rule_pack_file
from agent.runner.profiles import available_profiles, load_profile
from certification.rulepack import load_rule_pack, rule_pack_path

REPO = Path(__file__).resolve().parents[2]

# Runs the agent with the pack and profile folders of the test, in English unless a fifth argument names the
# language, then states whether Paddle was imported.
RUN_SCRIPT = """
import sys
from pathlib import Path
import certification.rulepack
import agent.runner.profiles
from agent.cli import main
certification.rulepack.RULEPACK_DIR = Path(sys.argv[1])
agent.runner.profiles.PROFILE_DIR = Path(sys.argv[2])
language = sys.argv[5] if len(sys.argv) > 5 else "en"
code = main(["--lang", language, "run", "--profile", "moved", "--out", sys.argv[3], "--data-root", sys.argv[4]])
print("exit", code, "paddle imported", "paddle" in sys.modules)
"""


@pytest.mark.parametrize("profile", available_profiles())
def test_shipped_profile_pack_valid(profile):
    lines = []

    check_rule_pack_file(rule_pack_path(load_profile(profile).rule_pack), lines.append)

    assert lines == []


def write_moved_pack(tmp_path: Path) -> tuple[Path, Path]:
    """Write pack moved-2026.1, tiny-2026.1 with sft-llama's learning_rate under free, and a profile that plans only pretrain-llama."""
    data = copy.deepcopy(load_rule_pack("tiny-2026.1").data)
    data["id"] = "moved"
    hyperparameters = data["workloads"]["sft-llama"]["hyperparameters"]
    hyperparameters["free"]["learning_rate"] = hyperparameters["fixed"].pop("learning_rate")
    packs, profiles = tmp_path / "packs", tmp_path / "profiles"
    packs.mkdir()
    profiles.mkdir()
    (packs / "moved-2026.1.yaml").write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    profile = {"rule_pack": "moved-2026.1", "tracks": ["pretraining"], "level": 1, "device": "cpu",
               "vendor": "Test Vendor", "card": {"model": "CPU", "serial": "1"}, "workloads": ["pretrain-llama"]}
    (profiles / "moved.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    return packs, profiles


def test_invalid_pack_rejected_before_inputs(tmp_path):
    packs, profiles = write_moved_pack(tmp_path)
    # A data root that does not exist: a run that got as far as the inputs would be rejected for it instead.
    missing_data = tmp_path / "no-data"

    completed = subprocess.run([sys.executable, "-c", RUN_SCRIPT, str(packs), str(profiles), str(tmp_path / "run"),
                                str(missing_data)], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert "exit 3 paddle imported False" in completed.stdout, completed.stderr[-2000:]
    assert "error[rule_pack_invalid]" in completed.stderr
    # The pack's anchors share sft-llama's hyperparameters with other fine-tuning workloads, which are rejected too.
    assert "problems in" in completed.stderr
    assert ("workloads/sft-llama/hyperparameters/free/learning_rate: workload sft-llama: learning_rate is under free, "
            "but sft workloads read it only from fixed; move it to fixed") in completed.stderr
    assert not (tmp_path / "run").exists()


def test_invalid_pack_problems_in_chinese(tmp_path):
    packs, profiles = write_moved_pack(tmp_path)
    pack_path = packs / "moved-2026.1.yaml"
    data = yaml.safe_load(pack_path.read_text(encoding="utf-8"))
    data["settings"]["loss_alignment"]["window"] = "lots"
    pack_path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    completed = subprocess.run([sys.executable, "-c", RUN_SCRIPT, str(packs), str(profiles), str(tmp_path / "run"),
                                str(tmp_path / "no-data"), "zh"], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert "exit 3 paddle imported False" in completed.stdout, completed.stderr[-2000:]
    assert 'settings/loss_alignment/window: "lots" 的类型是 string，但必须是 integer' in completed.stderr
    assert "is not of type" not in completed.stderr


def test_invalid_pack_same_error_as_validate_pack(tmp_path, capsys):
    from agent.cli import main

    packs, _profiles = write_moved_pack(tmp_path)

    code = main(["--lang", "en", "validate-pack", str(packs / "moved-2026.1.yaml")])

    output = capsys.readouterr()
    assert code == 3
    assert "error[rule_pack_invalid]" in output.err
    assert "free/learning_rate: workload sft-llama: learning_rate is under free" in output.out
