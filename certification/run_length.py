"""The run-length criterion, and the `epochs` record of fine-tuning that trains by num_train_epochs.

A workload whose pack fixes `max_steps` must log steps 1..max_steps. A
fine-tuning workload whose pack fixes `num_train_epochs` instead must log
steps 1..max_steps of the `epochs` record in its config.json
(agent.workloads.finetune.epoch_pairs writes it). The step count of an epoch
depends on the number of train pairs, which the pack does not state, so the
record is checked against the pack and against itself before its max_steps
is trusted. Compared with a reference run of the same pack, it must also give
the same batches, epoch by epoch.
"""

from __future__ import annotations

import re
from typing import Any

from certification.criteria import FAIL, PASS, REFUSED, Outcome, RecordsInvalid, WorkloadRecords, problem_zh, run_too_short
from certification.errors import BundleError

# The integers of the record. seed and the train pair count fix each epoch's order.
EPOCH_INTEGERS = ("num_train_epochs", "steps_per_epoch", "max_steps", "train_pairs", "seed")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# run_too_short lists at most this many missing steps in the verdict.
LISTED_MISSING_STEPS = 50


def trains_by_epochs(spec: dict) -> bool:
    """Return whether the pack sets the workload's length by num_train_epochs rather than max_steps."""
    fixed = spec["hyperparameters"]["fixed"]
    return "num_train_epochs" in fixed and "max_steps" not in fixed


def has_run_length(spec: dict) -> bool:
    """Return whether the workload gets the built-in run_length criterion: its pack fixes max_steps or num_train_epochs."""
    return "max_steps" in spec["hyperparameters"]["fixed"] or trains_by_epochs(spec)


def check_run_length(vendor: WorkloadRecords, spec: dict) -> Outcome:
    """Fail when steps.jsonl does not contain every step from 1 to the required count.

    The count is the pack's fixed max_steps, or the max_steps of the vendor's
    checked `epochs` record when the pack fixes num_train_epochs.
    """
    try:
        record = epochs_record(vendor, spec) if trains_by_epochs(spec) else None
        required = int(spec["hyperparameters"]["fixed"]["max_steps"]) if record is None else record["max_steps"]
        logged = vendor.step_numbers_through(required)
    except (RecordsInvalid, BundleError) as error:
        return Outcome(FAIL, "records_invalid", fields={"workload": vendor.workload_id, "problem": str(error), "problem_zh": problem_zh(error)})

    details = {} if record is None else {"epochs": {key: record[key] for key in ("num_train_epochs", "steps_per_epoch", "train_pairs")}}
    missing_count = required - sum(1 for step in logged if 1 <= step <= required)
    if missing_count:
        outcome = run_too_short(required, first_missing_steps(logged, required), required, missing_count)
        outcome.details.update(details)
        return outcome
    if record is None:
        return Outcome(PASS, "run_length_pass", measured=required, bound=required, fields={"required": required})
    fields = {"required": required, "epochs": record["num_train_epochs"], "steps_per_epoch": record["steps_per_epoch"]}
    return Outcome(PASS, "run_length_epochs_pass", measured=required, bound=required, fields=fields, details=details)


def first_missing_steps(logged: set[int], required: int) -> list[int]:
    """Return the first missing steps of 1..`required`, at most LISTED_MISSING_STEPS of them.

    The walk stops after them, so a required count far beyond the log (a
    record that claims billions of steps) takes time in proportion to the log.
    """
    missing = []
    step = 1
    while step <= required and len(missing) < LISTED_MISSING_STEPS:
        if step not in logged:
            missing.append(step)
        step += 1
    return missing


def epochs_record(records: WorkloadRecords, spec: dict) -> dict[str, Any]:
    """Return the `epochs` record of the workload's config.json; raise RecordsInvalid naming the first problem.

    The record is invalid when it is missing or when a count or the seed is
    not an integer. It is also invalid when it contradicts the pack
    (num_train_epochs, seed, the steps per epoch that the global batch
    gives) or itself (max_steps), or when order_sha256 is not one sha256 per
    epoch.
    """
    config = records.config
    if not isinstance(config, dict):
        raise RecordsInvalid("config.json is not an object", "config.json 不是 JSON 对象")
    record = config.get("epochs")
    if record is None:
        raise RecordsInvalid("config.json has no `epochs` record, but the rule pack sets num_train_epochs, so the run must record its epochs",
                             "config.json 没有 `epochs` 记录，但规则包设置了 num_train_epochs，运行必须记录其各轮次")
    if not isinstance(record, dict):
        raise RecordsInvalid(f"config.json `epochs` is {record!r}, not an object", f"config.json 的 `epochs` 是 {record!r}，不是 JSON 对象")

    for key in EPOCH_INTEGERS:
        if key not in record:
            raise RecordsInvalid(f"config.json epochs.{key} is missing", f"config.json 缺少 epochs.{key}")
        value = record[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise RecordsInvalid(f"config.json epochs.{key} is {value!r}, not an integer", f"config.json 的 epochs.{key} 是 {value!r}，不是整数")
    for key in ("num_train_epochs", "steps_per_epoch", "train_pairs"):
        if record[key] < 1:
            raise RecordsInvalid(f"config.json epochs.{key} is {record[key]}, but it must be at least 1",
                                 f"config.json 的 epochs.{key} 是 {record[key]}，但至少应为 1")

    _check_against_pack(record, spec["hyperparameters"]["fixed"])
    if record["max_steps"] != record["steps_per_epoch"] * record["num_train_epochs"]:
        product = record["steps_per_epoch"] * record["num_train_epochs"]
        raise RecordsInvalid(
            f"config.json epochs.max_steps is {record['max_steps']}, but steps_per_epoch {record['steps_per_epoch']} "
            f"x num_train_epochs {record['num_train_epochs']} is {product}",
            f"config.json 的 epochs.max_steps 是 {record['max_steps']}，但 steps_per_epoch {record['steps_per_epoch']} "
            f"x num_train_epochs {record['num_train_epochs']} 为 {product}")
    _check_order_digests(record)
    return record


def _check_against_pack(record: dict[str, Any], fixed: dict[str, Any]) -> None:
    if record["num_train_epochs"] != fixed["num_train_epochs"]:
        raise RecordsInvalid(
            f"config.json epochs.num_train_epochs is {record['num_train_epochs']}, but the rule pack sets {fixed['num_train_epochs']}",
            f"config.json 的 epochs.num_train_epochs 是 {record['num_train_epochs']}，但规则包设置为 {fixed['num_train_epochs']}")
    if "seed" in fixed and record["seed"] != fixed["seed"]:
        raise RecordsInvalid(f"config.json epochs.seed is {record['seed']}, but the rule pack sets seed {fixed['seed']}",
                             f"config.json 的 epochs.seed 是 {record['seed']}，但规则包设置的 seed 为 {fixed['seed']}")
    global_batch = fixed.get("global_batch_size")
    if isinstance(global_batch, int) and global_batch > 0 and record["steps_per_epoch"] != record["train_pairs"] // global_batch:
        raise RecordsInvalid(
            f"config.json epochs.steps_per_epoch is {record['steps_per_epoch']}, but train_pairs {record['train_pairs']} "
            f"// the rule pack's global_batch_size {global_batch} is {record['train_pairs'] // global_batch}",
            f"config.json 的 epochs.steps_per_epoch 是 {record['steps_per_epoch']}，但 train_pairs {record['train_pairs']} "
            f"// 规则包的 global_batch_size {global_batch} 为 {record['train_pairs'] // global_batch}")


def _check_order_digests(record: dict[str, Any]) -> None:
    if "order_sha256" not in record:
        raise RecordsInvalid("config.json epochs.order_sha256 is missing", "config.json 缺少 epochs.order_sha256")
    digests = record["order_sha256"]
    epochs = record["num_train_epochs"]
    if not isinstance(digests, list) or len(digests) != epochs:
        raise RecordsInvalid(f"config.json epochs.order_sha256 is {digests!r}, not a list of {epochs} sha256 digests, one per epoch",
                             f"config.json 的 epochs.order_sha256 是 {digests!r}，不是每轮一个、共 {epochs} 个 sha256 摘要的列表")
    for epoch, digest in enumerate(digests, start=1):
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise RecordsInvalid(f"config.json epochs.order_sha256 of epoch {epoch} is {digest!r}, not a lowercase hex sha256 digest",
                                 f"config.json 中第 {epoch} 轮的 epochs.order_sha256 是 {digest!r}，不是小写十六进制的 sha256 摘要")


def reference_epochs_problem(reference: WorkloadRecords, spec: dict) -> tuple[str, str] | None:
    """Return why the reference run's `epochs` record is unusable, as (English, Chinese), or None when it is valid or the workload trains by max_steps."""
    if not trains_by_epochs(spec):
        return None
    try:
        epochs_record(reference, spec)
    except (RecordsInvalid, BundleError) as error:
        bundle_id = reference.bundle.bundle_id
        return (f"reference bundle {bundle_id}: workload {reference.workload_id} has an invalid epochs record: {error}",
                f"参考结果包 {bundle_id}：工作负载 {reference.workload_id} 的 epochs 记录无效：{problem_zh(error)}")
    return None


def epoch_batches_outcome(spec: dict, vendor: WorkloadRecords, reference: WorkloadRecords) -> Outcome | None:
    """Return the outcome that blocks a comparison with the reference when the two runs trained on other batches, else None.

    Both `epochs` records must give the same steps_per_epoch, train_pairs
    and order of every epoch. An invalid vendor record fails, and an invalid
    reference record is refused.
    """
    # NOTE: numpy.random's compatibility policy promises the same Generator stream only on the same NumPy version,
    # so two runs that both follow the pack but use different NumPy versions may fail here. environment.json
    # records each run's NumPy version for staff who look into such a failure.
    if not trains_by_epochs(spec):
        return None
    try:
        vendor_record = epochs_record(vendor, spec)
    except (RecordsInvalid, BundleError) as error:
        return Outcome(FAIL, "records_invalid", fields={"workload": vendor.workload_id, "problem": str(error), "problem_zh": problem_zh(error)})
    problem = reference_epochs_problem(reference, spec)
    if problem:
        return Outcome(REFUSED, "reference_unusable", fields={"problem": problem[0], "problem_zh": problem[1]})

    differences = batch_differences(vendor_record, epochs_record(reference, spec))
    if not differences:
        return None
    fields = {"workload": vendor.workload_id, "differences": "; ".join(differences)}
    return Outcome(FAIL, "epoch_batches_mismatch", fields=fields, details={"differences": differences})


def batch_differences(vendor: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Name steps_per_epoch, train_pairs and each epoch's order where two valid records differ, as 'key VENDOR / REFERENCE'.

    An epoch's order is shown by the first 12 digits of both digests, as
    `order_sha256[EPOCH]`. The text contains no words, so that messages in
    either language can label the two sides. Equal data sets, seed and
    global batch give equal values of all three.
    """
    differences = [f"{key} {vendor[key]} / {reference[key]}" for key in ("steps_per_epoch", "train_pairs") if vendor[key] != reference[key]]
    for epoch, (found, expected) in enumerate(zip(vendor["order_sha256"], reference["order_sha256"]), start=1):
        if found != expected:
            differences.append(f"order_sha256[{epoch}] {found[:12]} / {expected[:12]}")
    return differences
