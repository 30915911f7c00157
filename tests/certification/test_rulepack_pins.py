"""Published rule packs are immutable: their bytes must hash to the pinned sha256."""

import hashlib
import shutil

import pytest
import yaml

from certification.rulepack import RULEPACK_DIR, RulePackError, available_rule_packs, published_pins, validate_rule_pack_file


@pytest.mark.parametrize(("name", "pinned"), sorted(published_pins().items()))
def test_published_pack_bytes_unchanged(name, pinned):
    path = RULEPACK_DIR / f"{name}.yaml"

    assert path.is_file(), f"published pack {name} was removed; published packs stay in the repository"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == pinned, (
        f"published pack {name} changed; restore its bytes and publish the change as a new version"
    )


@pytest.mark.parametrize("name", available_rule_packs())
def test_published_pack_is_pinned(name):
    status = yaml.safe_load((RULEPACK_DIR / f"{name}.yaml").read_text(encoding="utf-8"))["status"]

    if status == "published":
        assert name in published_pins()


def test_edited_published_pack_reported(tmp_path):
    name = next(iter(published_pins()))
    copy = tmp_path / f"{name}.yaml"
    copy.write_bytes((RULEPACK_DIR / f"{name}.yaml").read_bytes() + b"# an added comment\n")

    issues = validate_rule_pack_file(copy)

    assert [issue.path for issue in issues] == ["(file)"]
    assert "new version" in issues[0].message


def test_unpinned_published_pack_reported(tmp_path):
    text = (RULEPACK_DIR / "smoke-2026.1.yaml").read_text(encoding="utf-8").replace('version: "2026.1"', 'version: "2099.1"')
    text = text.replace("status: draft", "status: published")
    path = tmp_path / "smoke-2099.1.yaml"
    path.write_text(text, encoding="utf-8")

    paths = [issue.path for issue in validate_rule_pack_file(path)]

    assert "status" in paths


def test_wrong_file_name_reported(tmp_path):
    path = tmp_path / "standard.yaml"
    shutil.copyfile(RULEPACK_DIR / "standard-2024.1.yaml", path)

    assert [issue.path for issue in validate_rule_pack_file(path)] == ["(file name)"]


def test_invalid_yaml_reported(tmp_path):
    path = tmp_path / "broken-2026.1.yaml"
    path.write_text("id: [unclosed\n", encoding="utf-8")

    assert [issue.path for issue in validate_rule_pack_file(path)] == ["(file)"]


def test_unreadable_file_raises(tmp_path):
    with pytest.raises(RulePackError) as raised:
        validate_rule_pack_file(tmp_path / "absent-2026.1.yaml")

    assert raised.value.code == "rule_pack_unreadable"
