"""`manage.py validate_pack`: the portal runs the agent's rule pack check."""

import io

import pytest
import yaml
from django.core.management import CommandError, call_command

from certification.rulepack import RULEPACK_DIR


def test_standard_pack_valid():
    out = io.StringIO()

    call_command("validate_pack", str(RULEPACK_DIR / "standard-2024.1.yaml"), stdout=out)

    assert "valid rule pack standard-2024.1" in out.getvalue()


def test_invalid_pack_lists_paths(tmp_path):
    text = (RULEPACK_DIR / "standard-2024.1.yaml").read_text(encoding="utf-8").replace("reference_kind: a800", "reference_kind: gpu")
    path = tmp_path / "standard-2024.1.yaml"
    path.write_text(text, encoding="utf-8")
    err = io.StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("validate_pack", str(path), stderr=err)

    assert "rule_pack_invalid" in str(raised.value)
    assert "reference_kind:" in err.getvalue()


def test_missing_file_named(tmp_path):
    with pytest.raises(CommandError) as raised:
        call_command("validate_pack", str(tmp_path / "absent-2026.1.yaml"))

    assert "rule_pack_unreadable" in str(raised.value)


def test_schema_and_reference_problems_listed_together(tmp_path):
    text = (RULEPACK_DIR / "standard-2024.1.yaml").read_text(encoding="utf-8").replace("reference_kind: a800", "reference_kind: gpu")
    pack = yaml.safe_load(text)
    pack["workloads"]["pretrain-llama1-13b"]["datasets"]["validation"] = "ghost"
    path = tmp_path / "standard-2024.1.yaml"
    path.write_text(yaml.safe_dump(pack, allow_unicode=True), encoding="utf-8")
    err = io.StringIO()

    with pytest.raises(CommandError):
        call_command("validate_pack", str(path), stderr=err)

    assert "reference_kind:" in err.getvalue()
    assert "workloads/pretrain-llama1-13b/datasets/validation: unknown dataset 'ghost'" in err.getvalue()
