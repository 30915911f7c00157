"""The run length of fine-tuning that trains by num_train_epochs, judged from the `epochs` record of config.json."""

import pytest

from certification.verdict import Reference, judge
from tests.certification.runfolder import epochs_record
from tests.certification.test_verdict import PEAKS, edited_pack, make_bundle, status_and_code

# 42 train pairs in global batches of 4: 10 steps per epoch, 30 steps in 3 epochs.
EPOCHS = 3


def train_by_epochs(data):
    fixed = data["workloads"]["sft-llama"]["hyperparameters"]["fixed"]
    fixed.pop("max_steps")
    fixed["num_train_epochs"] = EPOCHS


PACK = edited_pack(train_by_epochs)
FIXED = PACK.workload("sft-llama")["hyperparameters"]["fixed"]
FINETUNING = ("sft-llama", "lora-llama")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("reference"), pack=PACK, workloads=FINETUNING, planned=FINETUNING)


def judged(folder, reference, **options):
    vendor = make_bundle(folder, pack=PACK, workloads=FINETUNING, planned=FINETUNING, **options)
    return judge(vendor, [Reference(reference, PEAKS)], PACK, PEAKS)


def with_epochs(**changes):
    """Return build_run options that replace keys of the sft-llama `epochs` record of 42 pairs."""
    return {"sft-llama": {"config_extra": {"epochs": {**epochs_record(FIXED, 42), **changes}}}}


def test_full_epochs_pass(tmp_path, reference):
    verdict = judged(tmp_path, reference)

    result = verdict.criterion("sft-llama.run_length")
    assert (result.status, result.details["code"]) == ("pass", "run_length_epochs_pass")
    assert result.measured == 30
    assert result.details["epochs"] == {"num_train_epochs": 3, "steps_per_epoch": 10, "train_pairs": 42}
    assert status_and_code(verdict, "sft-llama.fixed_hyperparameters") == ("pass", "fixed_hyperparameters_pass")
    assert status_and_code(verdict, "sft.rouge") == ("pass", "rouge_pass")
    assert verdict.tracks["finetuning"]["level"] == 1


@pytest.mark.parametrize(("steps", "missing_count"), [(29, 1), (15, 15), (1, 29)])
def test_too_few_steps_fail(tmp_path, reference, steps, missing_count):
    verdict = judged(tmp_path, reference, **{"sft-llama": {"finetune_steps": steps}})

    result = verdict.criterion("sft-llama.run_length")
    assert (result.status, result.details["code"]) == ("fail", "run_too_short")
    assert result.details["missing_steps"][0] == steps + 1
    assert f"{missing_count} are missing" in result.explanation["en"]
    assert verdict.tracks["finetuning"]["level"] == 0


def test_huge_claimed_count_fails_fast(tmp_path, reference):
    steps_per_epoch = 10**9
    changes = {"steps_per_epoch": steps_per_epoch, "max_steps": EPOCHS * steps_per_epoch, "train_pairs": 4 * steps_per_epoch}

    verdict = judged(tmp_path, reference, **with_epochs(**changes))

    result = verdict.criterion("sft-llama.run_length")
    assert (result.status, result.details["code"]) == ("fail", "run_too_short")
    assert result.details["missing_steps"] == list(range(31, 81))
    assert f"{EPOCHS * steps_per_epoch - 30} are missing" in result.explanation["en"]


@pytest.mark.parametrize(
    ("changes", "named", "named_zh"),
    [
        ({"steps_per_epoch": "10"}, "epochs.steps_per_epoch", "epochs.steps_per_epoch 是 '10'，不是整数"),
        ({"max_steps": 30.0}, "epochs.max_steps", "epochs.max_steps 是 30.0，不是整数"),
        ({"train_pairs": True}, "epochs.train_pairs", "epochs.train_pairs 是 True，不是整数"),
        ({"seed": None}, "epochs.seed", "epochs.seed 是 None，不是整数"),
        ({"num_train_epochs": 2, "max_steps": 20}, "num_train_epochs is 2", "epochs.num_train_epochs 是 2，但规则包设置为 3"),
        ({"max_steps": 15}, "epochs.max_steps is 15", "epochs.max_steps 是 15"),
        ({"steps_per_epoch": 0, "max_steps": 0}, "epochs.steps_per_epoch is 0", "epochs.steps_per_epoch 是 0，但至少应为 1"),
        ({"train_pairs": 80}, "train_pairs 80", "train_pairs 80"),
        ({"seed": 7}, "epochs.seed is 7", "epochs.seed 是 7"),
        ({"order_sha256": ["0" * 64]}, "epochs.order_sha256", "epochs.order_sha256"),
        ({"order_sha256": ["0" * 64, "0" * 64, "not a digest"]}, "epoch 3", "第 3 轮的 epochs.order_sha256"),
    ],
)
def test_bad_epochs_record_invalid(tmp_path, reference, changes, named, named_zh):
    verdict = judged(tmp_path, reference, **with_epochs(**changes))

    result = verdict.criterion("sft-llama.run_length")
    assert (result.status, result.details["code"]) == ("fail", "records_invalid")
    assert named in result.explanation["en"]
    assert named_zh in result.explanation["zh"]
    assert " is " not in result.explanation["zh"]
    assert status_and_code(verdict, "sft.rouge") == ("fail", "records_invalid")


@pytest.mark.parametrize("key", ["max_steps", "order_sha256"])
def test_epochs_key_missing_invalid(tmp_path, reference, key):
    record = epochs_record(FIXED, 42)
    del record[key]
    verdict = judged(tmp_path, reference, **{"sft-llama": {"config_extra": {"epochs": record}}})

    result = verdict.criterion("sft-llama.run_length")
    assert (result.status, result.details["code"]) == ("fail", "records_invalid")
    assert f"epochs.{key} is missing" in result.explanation["en"]
    assert f"缺少 epochs.{key}" in result.explanation["zh"]


@pytest.mark.parametrize("epochs", [None, "three epochs"])
def test_missing_epochs_record_invalid(tmp_path, reference, epochs):
    verdict = judged(tmp_path, reference, **{"sft-llama": {"config_extra": {"epochs": epochs}}})

    result = verdict.criterion("sft-llama.run_length")
    assert (result.status, result.details["code"]) == ("fail", "records_invalid")
    assert "epochs" in result.explanation["en"]


def test_other_train_pairs_mismatch(tmp_path, reference):
    # 41 pairs give the same 10 steps per epoch, but other permutations.
    verdict = judged(tmp_path, reference, **{"sft-llama": {"train_pairs": 41}})

    result = verdict.criterion("sft.rouge")
    assert (result.status, result.details["code"]) == ("fail", "epoch_batches_mismatch")
    assert "train_pairs 41 / 42" in result.explanation["en"]
    assert "order_sha256[1]" in result.explanation["zh"]
    assert status_and_code(verdict, "sft-llama.run_length") == ("pass", "run_length_epochs_pass")
    assert verdict.tracks["finetuning"]["level"] == 0


def test_shorter_epochs_mismatch(tmp_path, reference):
    # A vendor record of 20 pairs requires only 15 steps, and the run logs 15. The reference shows that 30 were due.
    verdict = judged(tmp_path, reference, **{"sft-llama": {"train_pairs": 20}})

    assert status_and_code(verdict, "sft-llama.run_length") == ("pass", "run_length_epochs_pass")
    assert verdict.criterion("sft-llama.run_length").measured == 15
    result = verdict.criterion("sft.rouge")
    assert (result.status, result.details["code"]) == ("fail", "epoch_batches_mismatch")
    assert "steps_per_epoch 5 / 10" in result.explanation["en"]
    assert verdict.tracks["finetuning"]["level"] == 0


def test_other_order_mismatch(tmp_path, reference):
    digests = epochs_record(FIXED, 42)["order_sha256"]
    verdict = judged(tmp_path, reference, **with_epochs(order_sha256=[digests[0], "a" * 64, digests[2]]))

    result = verdict.criterion("sft.rouge")
    assert (result.status, result.details["code"]) == ("fail", "epoch_batches_mismatch")
    assert result.details["differences"] == [f"order_sha256[2] {'a' * 12} / {digests[1][:12]}"]


def test_reference_without_record_refused(tmp_path):
    broken = make_bundle(tmp_path / "reference", pack=PACK, workloads=FINETUNING, planned=FINETUNING,
                         **{"sft-llama": {"config_extra": {"epochs": None}}})

    verdict = judged(tmp_path / "vendor", broken)

    result = verdict.criterion("sft.rouge")
    assert (result.status, result.details["code"]) == ("refused", "reference_unusable")
    assert "epochs" in result.explanation["en"]
    assert status_and_code(verdict, "sft-llama.run_length") == ("pass", "run_length_epochs_pass")


def test_other_epoch_count_fails_fixed_check(tmp_path, reference):
    verdict = judged(tmp_path, reference, **{"sft-llama": {"fixed_overrides": {"num_train_epochs": 2}}})

    result = verdict.criterion("sft-llama.fixed_hyperparameters")
    assert (result.status, result.details["code"]) == ("fail", "fixed_hyperparameters_fail")
    assert "num_train_epochs 2 / 3" in result.explanation["en"]
    assert status_and_code(verdict, "sft-llama.run_length") == ("fail", "records_invalid")


def test_max_steps_workload_keeps_pack_count(tmp_path, reference):
    verdict = judged(tmp_path, reference, **{"lora-llama": {"finetune_steps": 29}})

    result = verdict.criterion("lora-llama.run_length")
    assert (result.status, result.details["code"]) == ("fail", "run_too_short")
    assert "epochs" not in result.details
