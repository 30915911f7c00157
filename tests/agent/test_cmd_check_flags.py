"""`python -m agent check` shows the peak TFLOPS flags of a verdict in both languages."""

import pytest

from agent.commands.check import format_verdict
from agent.i18n import set_language
from certification.verdict import Reference, judge
from tests.certification.test_verdict import PEAKS, make_bundle
from tests.certification.runfolder import PACK


def test_check_prints_peak_flag(tmp_path):
    reference = make_bundle(tmp_path / "reference", workloads=("sft-llama",))
    vendor = make_bundle(tmp_path / "vendor", workloads=("sft-llama",), environment={"peak_tflops": {"fp32": 9.0}})
    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)

    english = format_verdict(verdict, "en")
    chinese = format_verdict(verdict, "zh")

    assert "states a peak of 9 fp32 TFLOPS" in english
    assert "登记值 1" in chinese


def test_check_names_unplanned_workloads(tmp_path):
    reference = make_bundle(tmp_path / "reference")
    vendor = make_bundle(tmp_path / "vendor")
    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)

    english = format_verdict(verdict, "en")

    finetuning = next(line for line in english.splitlines() if line.startswith("fine-tuning:"))
    assert finetuning == "fine-tuning: level 1/2"
    assert "    level 2 needs workloads that this run did not plan: sd-sft-digits (profile demo-sd)" in english
    assert "    level 2 needs workloads that this run did not plan: sd-infer-digits (profile demo-sd)" in english
    assert "sd-sft-digits.fixed_hyperparameters (PENDING)" not in english


@pytest.mark.parametrize("process_language, language, expected", [
    ("en", "zh", "    第 2 级需要本次运行未计划的工作负载：sd-sft-digits（配置 demo-sd）"),
    ("zh", "en", "    level 2 needs workloads that this run did not plan: sd-sft-digits (profile demo-sd)"),
])
def test_unplanned_follows_language_argument(tmp_path, process_language, language, expected):
    reference = make_bundle(tmp_path / "reference")
    vendor = make_bundle(tmp_path / "vendor")
    verdict = judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)
    set_language(process_language)

    text = format_verdict(verdict, language)

    assert expected in text.splitlines()
