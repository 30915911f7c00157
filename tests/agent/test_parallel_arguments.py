"""The pack's free parallel keys as PaddleNLP TrainingArguments, and the sharding stages the agent rejects."""

import pytest

from agent.workloads.training import parallel_arguments


def test_sharding_stage_maps_to_paddlenlp_string():
    arguments = parallel_arguments({"tensor_parallel_degree": 2, "sharding_stage": 1, "recompute": True})

    assert arguments == {"tensor_parallel_degree": 2, "pipeline_parallel_degree": 1, "sharding": "stage1", "recompute": True}


def test_paddlenlp_sharding_string_wins():
    assert parallel_arguments({"sharding_stage": 1, "sharding": "stage2"})["sharding"] == "stage2"


def test_pipeline_degree_maps():
    # agent.workloads.models builds the *Pipe class for it; tests/agent/test_pipeline_parallel.py runs two stages.
    assert parallel_arguments({"pipeline_parallel_degree": 2})["pipeline_parallel_degree"] == 2


def test_unknown_sharding_stage():
    with pytest.raises(ValueError, match="sharding_stage 4 is not supported: use 0, 1, 2 or 3"):
        parallel_arguments({"sharding_stage": 4})
