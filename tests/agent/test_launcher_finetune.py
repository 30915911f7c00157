"""SFT and LoRA of the tiny LLaMA preset in two CPU processes under `paddle.distributed.launch`, against one process.

The launched run trains with micro-batches of 1 pair, so each step of 4 pairs
is 2 data ranks x 2 accumulated micro-batches, while the one-process run takes
all 4 pairs at once. Pairs differ in length, so the loss curves agree only if
the loss is the mean over every label token of the global batch. Both runs
decode in batches of 3, so the 4 dev batches (3 + 1 pairs per dev set) are
dealt to the two ranks alternately and rank 0 has to put them back in order.
"""

import pytest

from certification.records import read_json, read_jsonl

from agent.workloads.finetune import GlobalBatchTokens
from tests.agent.launching import FINETUNE_MAX_STEPS, FINETUNE_WORKLOADS, launch_finetune, losses, run_finetune_one_process

# eval_samples_per_dataset is 4 in the tiny pack.
DEV_ITEMS = [(name, index) for name in ("sft_zh_dev", "sft_en_dev") for index in range(4)]
GLOBAL_BATCH = 4

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return run_finetune_one_process(tmp_path_factory.mktemp("finetune-one"))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finetune-launch")
    launch_finetune(folder, "--set", "per_device_train_batch_size=1", timeout=600)
    return folder


@slow
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_loss_matches_one_process(two_ranks, one_process, workload):
    two, one = losses(two_ranks / "run", workload), losses(one_process, workload)

    assert sorted(two) == list(range(1, FINETUNE_MAX_STEPS + 1))
    assert two == pytest.approx(one, rel=1e-5)


@slow
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_step_records_sum_data_ranks(two_ranks, one_process, workload):
    two = read_jsonl(two_ranks / "run" / "workloads" / workload / "steps.jsonl")
    one = read_jsonl(one_process / "workloads" / workload / "steps.jsonl")

    assert [record["effective_tokens"] for record in two] == [record["effective_tokens"] for record in one]
    assert all(record["cards"] == 2 for record in two)
    assert two[-1]["consumed_samples"] == FINETUNE_MAX_STEPS * GLOBAL_BATCH


@slow
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_trainer_layout_recorded(two_ranks, workload):
    config = read_json(two_ranks / "run" / "workloads" / workload / "config.json")

    assert config["trainer"]["data_parallel_ranks"] == 2
    assert config["trainer"]["gradient_accumulation_steps"] == 2
    assert config["trainer"]["per_device_train_batch_size"] == 1


@slow
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_predictions_once_in_order(two_ranks, workload):
    predictions = read_jsonl(two_ranks / "run" / "workloads" / workload / "predictions.jsonl")
    result = read_json(two_ranks / "run" / "workloads" / workload / "result.json")

    assert [(record["dataset"], record["index"]) for record in predictions] == DEV_ITEMS
    assert result["summary"]["predictions"] == len(DEV_ITEMS)


@slow
@pytest.mark.parametrize("workload", FINETUNE_WORKLOADS)
def test_predictions_equal_one_process(two_ranks, one_process, workload):
    two = read_jsonl(two_ranks / "run" / "workloads" / workload / "predictions.jsonl")
    one = read_jsonl(one_process / "workloads" / workload / "predictions.jsonl")

    assert two == one


@slow
def test_dev_batches_split_over_ranks(two_ranks):
    logs = {path.name: path.read_text(errors="replace") for path in (two_ranks / "logs").glob("workerlog.*")}

    for workload in FINETUNE_WORKLOADS:
        assert f"{workload}: decoded 2 of 4 dev batches on model copy 0 of 2" in logs["workerlog.0"]
        assert f"{workload}: decoded 2 of 4 dev batches on model copy 1 of 2" in logs["workerlog.1"]


@slow
def test_run_records_two_processes(two_ranks):
    environment_record = read_json(two_ranks / "run" / "environment.json")

    assert environment_record["device"]["processes"] == 2
    assert environment_record["nodes"] == 1


@pytest.mark.parametrize(("micro_batch", "data_ranks"), [(1, 1), (4, 1), (1, 2), (2, 2), (1, 4)])
def test_token_counts_follow_sampler(micro_batch, data_ranks):
    from paddlenlp.utils.batch_sampler import DistributedBatchSampler

    # Powers of two, so that a micro-batch's sum names exactly the pairs in it.
    counts = [2 ** index for index in range(16)]
    tokens = GlobalBatchTokens(counts, GLOBAL_BATCH)
    accumulation = GLOBAL_BATCH // (micro_batch * data_ranks)

    for rank in range(data_ranks):
        sampler = DistributedBatchSampler(list(range(16)), batch_size=micro_batch, num_replicas=data_ranks, rank=rank,
                                          shuffle=False)
        for number, batch in enumerate(sampler):
            step, index = divmod(number, accumulation)
            assert tokens.micro_batch(step, index, micro_batch, rank, data_ranks) == sum(counts[i] for i in batch)


def test_global_batch_tokens_wrap_by_epoch():
    tokens = GlobalBatchTokens([1, 2, 3, 4, 5, 6, 7, 8], GLOBAL_BATCH)

    assert [tokens.step(step) for step in range(4)] == [10, 26, 10, 26]
    assert tokens.micro_batch(3, 1, 1, 1, 2) == 8


def test_global_batch_tokens_reject_partial_batch():
    with pytest.raises(ValueError, match="6 training pairs are not a whole number of global batches of 4"):
        GlobalBatchTokens([1] * 6, GLOBAL_BATCH)
