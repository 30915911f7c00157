"""The verdict's input comparison (certification.inputs) as `agent check` prints it and writes it into the HTML report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.i18n import N_, _
from certification.inputs import KIND_NAMES

# The relation of an input's digests, keyed by certification.inputs status.
STATUS_LABELS = {
    "equal": N_("equal"),
    "different": N_("no: the digests differ"),
    "off_pin": N_("no: both differ from the rule pack"),
    "vendor_only": N_("no: not recorded by the reference run"),
    "reference_only": N_("no: not recorded by the vendor run"),
    "not_recorded": N_("no: recorded by neither run"),
}
# Digits of a sha256 shown in the text output; the explanation of a failed criterion gives the whole digest.
SHORT_DIGEST = 12


@dataclass(frozen=True)
class InputRow:
    """One input of one workload as the reports show it."""

    status: str
    status_label: str
    kind_label: str
    name: str
    vendor: str | None
    reference: str | None
    pinned: str | None


@dataclass(frozen=True)
class WorkloadInputs:
    """The inputs of one workload, the reference bundle they were compared with and why that reference was used."""

    workload: str
    reference_bundle_id: str
    choice: str
    rows: list[InputRow]

    @property
    def reference_note(self) -> str:
        """Return why the reference was used, or only its bundle id for a verdict that did not record why."""
        return self.choice or _("reference bundle {bundle}").format(bundle=self.reference_bundle_id)


def workload_inputs(inputs: dict[str, dict[str, Any]], language: str) -> list[WorkloadInputs]:
    """Return the verdict's `inputs` per workload, with labels in `language`.

    A verdict judged before the reference choice was recorded has no
    `reference_choice`; its `choice` is then empty.
    """
    workloads = []
    for workload, compared in inputs.items():
        choice = (compared.get("reference_choice") or {}).get("explanation") or {}
        rows = [_row(entry, language) for entry in compared.get("inputs", [])]
        workloads.append(WorkloadInputs(workload, str(compared.get("reference_bundle_id", "")), choice.get(language, ""), rows))
    return workloads


def _row(entry: dict[str, Any], language: str) -> InputRow:
    kind = entry.get("kind", "")
    kind_label = KIND_NAMES.get(kind, {}).get(language, kind)
    status = entry.get("status", "")
    status_label = _(STATUS_LABELS[status]) if status in STATUS_LABELS else status
    return InputRow(status, status_label, kind_label, entry.get("name", ""), entry.get("vendor"), entry.get("reference"), entry.get("pinned"))


def format_inputs(inputs: dict[str, dict[str, Any]], language: str) -> list[str]:
    """Return the text lines of the input comparison: per workload the reference used, then one line per input."""
    workloads = workload_inputs(inputs, language)
    if not workloads:
        return []
    lines = [_("Inputs compared with the reference (sha256, first {digits} hex digits):").format(digits=SHORT_DIGEST)]
    for item in workloads:
        lines.append(f"  {item.workload}: {item.reference_note}")
        for row in item.rows:
            digests = _("vendor {vendor}, reference {reference}, rule pack {pinned}").format(
                vendor=short_digest(row.vendor), reference=short_digest(row.reference), pinned=short_digest(row.pinned))
            lines.append(f"    [{row.status_label}] {row.kind_label} {row.name}: {digests}")
    return lines


def short_digest(digest: str | None) -> str:
    return digest[:SHORT_DIGEST] if digest else "-"
