"""Planning workloads from a rule pack's tracks and levels."""

import pytest

from agent.errors import AgentError
from agent.runner.plan import input_files, plan_workloads
from certification.rulepack import load_rule_pack


@pytest.fixture(scope="module")
def demo_pack():
    return load_rule_pack("demo-2026.1")


def test_pretraining_pulls_in_finetuning(demo_pack):
    assert plan_workloads(demo_pack, ["pretraining"], 1) == ["pretrain-llama", "sft-llama", "lora-llama"]


def test_finetuning_plans_init_from_first(demo_pack):
    planned = plan_workloads(demo_pack, ["finetuning"], 1)

    assert planned.index("pretrain-llama") < planned.index("sft-llama")
    assert planned.index("pretrain-llama") < planned.index("lora-llama")
    assert len(planned) == len(set(planned))


def test_missing_level_rejected(demo_pack):
    with pytest.raises(AgentError) as error:
        plan_workloads(demo_pack, ["pretraining"], 2)

    assert error.value.code == "level_not_defined"


def test_unknown_track_rejected(demo_pack):
    with pytest.raises(AgentError) as error:
        plan_workloads(demo_pack, ["quantum"], 1)

    assert error.value.code == "track_not_found"


def test_input_files_cover_tokenizer_and_data(demo_pack):
    files = input_files(demo_pack, plan_workloads(demo_pack, ["pretraining"], 1))

    assert "tokenizer llama2" in files
    assert "dataset lambada" in files
    assert "dataset sft_en_dev" in files


@pytest.mark.parametrize("level", [0, -1, 3, 10**20])
def test_undefined_level_rejected(demo_pack, level):
    with pytest.raises(AgentError) as error:
        plan_workloads(demo_pack, ["finetuning"], level)

    assert error.value.code == "level_not_defined"
    assert f"no level {level}" in error.value.message
    assert error.value.hint.endswith("finetuning: 1, 2")


def test_level_hint_lists_defined_levels(demo_pack):
    with pytest.raises(AgentError) as error:
        plan_workloads(demo_pack, ["pretraining"], 2)

    assert error.value.code == "level_not_defined"
    assert error.value.hint.endswith("pretraining: 1")
