"""Loading rule packs: the standard as versioned YAML data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RULEPACK_DIR = Path(__file__).parent / "rulepacks"


class RulePackError(ValueError):
    def __init__(self, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.code = code
        self.hint = hint


@dataclass(frozen=True)
class RulePack:
    """One parsed rule pack; `sha256` is the hash of the file's exact bytes."""

    name: str
    sha256: str
    data: dict[str, Any]
    text: str

    @property
    def reference_kind(self) -> str:
        return self.data["reference_kind"]

    def workload(self, workload_id: str) -> dict[str, Any]:
        return self.data["workloads"][workload_id]


def available_rule_packs() -> list[str]:
    return sorted(path.stem for path in RULEPACK_DIR.glob("*.yaml"))


def parse_rule_pack(raw: bytes) -> RulePack:
    """Parse rule pack bytes; the name comes from its `id` and `version`."""
    data = yaml.safe_load(raw.decode("utf-8"))
    if not isinstance(data, dict) or "id" not in data or "version" not in data:
        raise RulePackError("rule_pack_invalid", "the rule pack has no 'id' and 'version' at its top level")
    return RulePack(
        name=f"{data['id']}-{data['version']}",
        sha256=hashlib.sha256(raw).hexdigest(),
        data=data,
        text=raw.decode("utf-8"),
    )


def load_rule_pack(name: str) -> RulePack:
    """Load a shipped rule pack by name, such as `demo-2026.1`."""
    path = RULEPACK_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_rule_packs()) or "none"
        raise RulePackError(
            "rule_pack_not_found",
            f"rule pack {name!r} not found in {RULEPACK_DIR}",
            f"use one of: {known}",
        )
    return parse_rule_pack(path.read_bytes())
