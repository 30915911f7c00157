"""Fine-tuning for num_train_epochs passes over the train pairs, as the standard's pack sets it, on the real Paddle stack."""

import copy
import hashlib

import numpy as np
import pytest
import yaml

from certification.records import read_json, read_jsonl
from certification.rulepack import load_rule_pack

from tests.agent.test_checkpoints import save_tiny_model, sha256sum_digest

# One train set of 899 pairs in global batches of 400: two steps per epoch, 99 pairs left out of each.
TRAIN_PAIRS = 899
GLOBAL_BATCH = 400
EPOCHS = 2
SEED = 42


def epochs_pack(folder, by_epochs: bool = True) -> dict:
    """Return tiny-2026.1 as pack `epochs`, whose lora-llama starts from the checkpoint in `folder` and trains by epochs.

    With `by_epochs` False, lora-llama trains for max_steps 4 instead, twice the global batches of its train pairs.
    """
    data = copy.deepcopy(load_rule_pack("tiny-2026.1").data)
    data["id"] = "epochs"
    data["models"]["llama-tiny"]["checkpoint"] = {"path": "absent/llama", "sha256": sha256sum_digest(folder)}
    workload = data["workloads"]["lora-llama"]
    workload.pop("init_from")
    workload["datasets"] = {"train": "sft_en_train", "eval": "sft_en_dev"}
    fixed = workload["hyperparameters"]["fixed"]
    if by_epochs:
        fixed.pop("max_steps")
        fixed["num_train_epochs"] = EPOCHS
    else:
        fixed["max_steps"] = EPOCHS * (TRAIN_PAIRS // GLOBAL_BATCH)
    fixed.update(global_batch_size=GLOBAL_BATCH, warmup_steps=1, eval_samples_per_dataset=2, seed=SEED)
    workload["hyperparameters"]["free"] = {"per_device_train_batch_size": 100, "eval_batch_size": 2}
    return data


@pytest.fixture(scope="module")
def epochs_run(tmp_path_factory):
    return run_lora_llama(tmp_path_factory.mktemp("epochs"), by_epochs=True)


@pytest.fixture(scope="module")
def max_steps_run(tmp_path_factory):
    return run_lora_llama(tmp_path_factory.mktemp("max_steps"), by_epochs=False)


def run_lora_llama(root, by_epochs: bool):
    """Run lora-llama of epochs_pack on the CPU in `root` and return its workload folder."""
    import certification.rulepack
    import agent.runner.profiles
    from agent.cli import main

    folder = root / "vendor" / "llama"
    save_tiny_model(load_rule_pack("tiny-2026.1"), "llama-tiny", folder)
    packs, profiles = root / "packs", root / "profiles"
    packs.mkdir()
    profiles.mkdir()
    (packs / "epochs-2026.1.yaml").write_text(yaml.safe_dump(epochs_pack(folder, by_epochs), allow_unicode=True, sort_keys=False),
                                              encoding="utf-8")
    profile = {"rule_pack": "epochs-2026.1", "tracks": ["finetuning"], "level": 1, "device": "cpu",
               "vendor": "Test Vendor", "card": {"model": "CPU", "serial": "1"}, "workloads": ["lora-llama"]}
    (profiles / "epochs.yaml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(certification.rulepack, "RULEPACK_DIR", packs)
        patch.setattr(agent.runner.profiles, "PROFILE_DIR", profiles)
        assert main(["run", "--profile", "epochs", "--out", str(root / "run"), "--checkpoint", f"llama-tiny={folder}"]) == 0
    return root / "run" / "workloads" / "lora-llama"


@pytest.mark.slow
def test_epochs_set_step_count(epochs_run):
    steps = read_jsonl(epochs_run / "steps.jsonl")

    assert [record["step"] for record in steps] == [1, 2, 3, 4]
    assert steps[-1]["consumed_samples"] == EPOCHS * 2 * GLOBAL_BATCH


@pytest.mark.slow
def test_epochs_recorded(epochs_run):
    record = read_json(epochs_run / "config.json")["epochs"]

    assert record["num_train_epochs"] == EPOCHS
    assert record["steps_per_epoch"] == 2
    assert record["max_steps"] == 4
    assert record["train_pairs"] == TRAIN_PAIRS
    assert record["pairs_left_out_per_epoch"] == TRAIN_PAIRS - 2 * GLOBAL_BATCH
    assert record["seed"] == SEED


@pytest.mark.slow
def test_epoch_order_follows_seed(epochs_run):
    record = read_json(epochs_run / "config.json")["epochs"]

    expected = []
    for epoch in range(1, EPOCHS + 1):
        order = np.random.default_rng([SEED, epoch]).permutation(TRAIN_PAIRS)[: 2 * GLOBAL_BATCH]
        expected.append(hashlib.sha256(order.astype("<i8").tobytes()).hexdigest())
    assert record["order_sha256"] == expected
    assert expected[0] != expected[1]


@pytest.mark.slow
def test_epochs_decay_to_the_last_step(epochs_run):
    steps = read_jsonl(epochs_run / "steps.jsonl")

    # The linear decay spans the 4 steps derived from the epochs, so the rate still falls from step 2 to step 4.
    rates = [record["learning_rate"] for record in steps]
    assert rates[1] > rates[2] > rates[3]


@pytest.mark.slow
def test_max_steps_repeats_pairs(max_steps_run):
    steps = read_jsonl(max_steps_run / "steps.jsonl")

    # The 899 pairs hold 2 whole global batches, so max_steps 4 reads each of them twice.
    assert [record["step"] for record in steps] == [1, 2, 3, 4]
    assert steps[-1]["consumed_samples"] == 4 * GLOBAL_BATCH
    assert "epochs" not in read_json(max_steps_run / "config.json")
