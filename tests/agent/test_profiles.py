"""Run profiles by name and by path, and the shipped profiles of the standard pack."""

import pytest
import yaml

from agent.errors import AgentError
from agent.runner.plan import input_files, plan_workloads
from agent.runner.profiles import PROFILE_DIR, load_profile
from certification.rulepack import load_rule_pack

STANDARD_LEVELS = {1: "standard-level1", 2: "standard-level2", 3: "standard-level3"}


@pytest.mark.parametrize(("level", "name"), STANDARD_LEVELS.items())
def test_standard_profile_plans(level, name):
    profile = load_profile(name)
    pack = load_rule_pack(profile.rule_pack)

    planned = plan_workloads(pack, profile.tracks, profile.level, profile.workloads)

    assert profile.rule_pack == "standard-2024.1"
    assert profile.level == level
    level_workloads = {workload for track in profile.tracks
                       for workload in pack.data["tracks"][track]["levels"][level]["workloads"]}
    assert level_workloads <= set(planned)
    assert len(planned) == len(set(planned))
    assert input_files(pack, planned)


def test_profile_by_path(tmp_path):
    data = yaml.safe_load((PROFILE_DIR / "standard-level1.yaml").read_text(encoding="utf-8"))
    data.update(tracks=["finetuning"], vendor="Path Vendor")
    path = tmp_path / "my-standard.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    profile = load_profile(str(path))

    assert profile.name == "my-standard"
    assert profile.tracks == ["finetuning"]
    assert profile.vendor == "Path Vendor"


def test_missing_profile_path_named(tmp_path):
    with pytest.raises(AgentError) as error:
        load_profile(str(tmp_path / "absent.yaml"))
    assert error.value.code == "profile_not_found"
    assert str(tmp_path / "absent.yaml") in error.value.message


def test_invalid_profile_path_rejected(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("rule_pack: standard-2024.1\n", encoding="utf-8")

    with pytest.raises(AgentError) as error:
        load_profile(str(path))
    assert error.value.code == "profile_invalid"


@pytest.mark.parametrize(("language", "expected"), [
    ("zh", "无效：缺少键 card, device, vendor"),
    ("en", "is invalid: missing keys: card, device, vendor"),
])
def test_invalid_profile_in_language(tmp_path, language, expected):
    from agent.i18n import set_language

    path = tmp_path / "partial.yaml"
    path.write_text("rule_pack: demo-2026.1\ntracks: [pretraining]\nlevel: 1\n")
    set_language(language)
    try:
        with pytest.raises(AgentError) as error:
            load_profile(str(path))
    finally:
        set_language(None)

    assert error.value.code == "profile_invalid"
    assert expected in error.value.message
    assert "[" not in error.value.message


def test_invalid_profile_lists_every_problem(tmp_path):
    path = tmp_path / "several.yaml"
    path.write_text("rule_pack: demo-2026.1\ntracks: [pretraining]\nlevel: 1\nvendor: x\ncard: {}\nworkloads: 3\nextra: 1\n")

    with pytest.raises(AgentError) as error:
        load_profile(str(path))

    assert error.value.code == "profile_invalid"
    assert "missing keys: device" in error.value.message
    assert "unknown keys: extra" in error.value.message
    assert "'card' needs 'model' and 'serial'" in error.value.message
    assert "'workloads' must be a list of workload ids" in error.value.message


def load_in_language(path, language):
    from agent.i18n import set_language

    set_language(language)
    try:
        with pytest.raises(AgentError) as error:
            load_profile(str(path))
    finally:
        set_language(None)
    return error.value


@pytest.mark.parametrize(("language", "expected", "hint"), [
    ("en", "invalid YAML at line 2, column 1", "fix the YAML at that line and column"),
    ("zh", "第 2 行第 1 列：此处应为节点的内容", "YAML"),
])
def test_profile_yaml_syntax_error(tmp_path, language, expected, hint):
    path = tmp_path / "broken.yaml"
    path.write_text("rule_pack: [\n", encoding="utf-8")

    error = load_in_language(path, language)

    assert error.code == "profile_invalid"
    assert str(path) in error.message
    assert expected in error.message
    assert hint in error.hint


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "byte 0xff at offset 11 is invalid"),
    ("zh", "0xff"),
])
def test_profile_not_utf8(tmp_path, language, expected):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"rule_pack: \xff\n")

    error = load_in_language(path, language)

    assert error.code == "profile_invalid"
    assert expected in error.message
    assert "UTF-8" in error.hint


@pytest.mark.parametrize("level", ["'2'", "1.5", "true", "abc"])
def test_profile_level_not_integer(tmp_path, level):
    data = yaml.safe_load((PROFILE_DIR / "demo.yaml").read_text(encoding="utf-8"))
    path = tmp_path / "level.yaml"
    path.write_text(yaml.safe_dump(data).replace("level: 1", f"level: {level}"), encoding="utf-8")

    error = load_in_language(path, "en")

    assert error.code == "profile_invalid"
    assert "'level' must be a whole number" in error.message
