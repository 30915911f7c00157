"""Translations of the rule pack problems that certification.rulepack reports with a code and values.

Each entry has the layout of agent.errors.CORE_MESSAGES, which includes this table. The `schema_*` codes
come from certification.rulepack_schema, one per common JSON Schema keyword. The others are the
cross-reference checks of certification.rulepack. Values are language-neutral: names from the pack,
numbers, JSON type names, and scalars written as YAML (strings in double quotes).
"""

from __future__ import annotations

from agent.i18n import N_

RULE_PACK_PROBLEMS: dict[str, tuple[tuple[str, ...], str | None]] = {
    # JSON Schema errors.
    "schema_type": ((N_("{value} is a {found}, but it must be of type {type}"), N_("the value is a {found}, but it must be of type {type}")), None),
    "schema_minimum": ((N_("{value} is less than the minimum of {limit}"), N_("the value is less than the minimum of {limit}")), None),
    "schema_maximum": ((N_("{value} is greater than the maximum of {limit}"), N_("the value is greater than the maximum of {limit}")), None),
    "schema_exclusive_minimum": ((N_("{value} must be greater than {limit}"), N_("the value must be greater than {limit}")), None),
    "schema_exclusive_maximum": ((N_("{value} must be less than {limit}"), N_("the value must be less than {limit}")), None),
    "schema_min_items": ((N_("the list needs at least {limit} items"),), None),
    "schema_max_items": ((N_("the list may have at most {limit} items"),), None),
    "schema_min_length": ((N_("the text needs at least {limit} characters"),), None),
    "schema_min_properties": ((N_("the mapping needs at least {limit} keys"),), None),
    "schema_enum": ((N_("{value} is not one of {choices}"), N_("the value is not one of {choices}")), None),
    "schema_const": ((N_("{value} must be {expected}"), N_("the value must be {expected}")), None),
    "schema_required": ((N_("the required key {key} is missing"),), None),
    "schema_additional_properties": ((N_("keys that the schema does not allow here: {keys}"),), None),
    "schema_pattern": ((N_("{value} does not match the pattern {pattern}"), N_("the value does not match the pattern {pattern}")), None),
    "schema_invalid": ((N_("the value does not meet the schema keyword {keyword}"),), None),
    # Cross-reference problems.
    "unknown_model": ((N_("unknown model {model}: define it under models"),), None),
    "unknown_workload": ((N_("unknown workload {workload}: define it under workloads"),), None),
    "unknown_dataset": ((N_("unknown dataset {dataset}: define it under datasets"),), None),
    "dataset_role_missing": ((N_("a {workload_kind} workload reads a {role} dataset: name one here"),), None),
    "lambada_dataset_missing": ((N_("criterion {criterion} measures LAMBADA accuracy: name the lambada dataset here"),), None),
    "init_from_missing": ((N_("a {workload_kind} workload needs init_from or a model with a checkpoint, and model {model} has none"),), None),
    "hyperparameter_fixed_and_free": ((N_("both fixed and free: {keys}; keep each key in one section"),), None),
    "calibration_missing": ((N_("an a8w8 workload needs a calibration set for its PTQ calibration: "
                                "name a dataset of {{\"src\": ...}} lines under datasets.calibration"),), None),
    "corpus_not_pretrain_train": ((N_("pre-tokenized corpus {dataset} can only be the one train set of a pretrain workload"),), None),
    "unknown_interpretation": ((N_("unknown interpretation setting {setting}: define it under settings.interpretations"),), None),
    "interpretation_unknown_models": ((N_("names models that the pack does not define: {models}"),), None),
    "interpretation_value_not_option": ((N_("{value} is not one of the options"),), None),
    "digest_unset": ((N_("unset digest in a {status} pack; set the file's sha256 or keep the pack a draft"),), None),
    "checkpoint_digest_unset": ((N_("unset digest in a {status} pack; set the checkpoint's manifest digest or keep the pack a draft"),), None),
    "sft_only_model": ((N_("model {model} is SFT only (settings/interpretations/sft_only_models), so it cannot have a {workload_kind} workload"),), None),
    "unknown_required_track": ((N_("unknown or circular track {track}"),), None),
    "init_from_cycle": ((N_("workload {workload} starts from itself through init_from: {chain}"),), None),
    "level_missing": ((N_("track {track} defines levels {levels} but not level {level}; define every level from 1 to {highest}"),), None),
    "required_track_level_missing": ((N_("track {track} requires track {required_track} at the same level, but {required_track} has no level {level}"),), None),
    "loss_steps_not_windows": ((N_("{steps} steps do not split into windows of {window}"),), None),
    "mean_steps_reversed": ((N_("first step {first} is after last step {last}"),), None),
    "criterion_id_duplicate": ((N_("criterion id {criterion} is also used by {workload}"),), None),
}
