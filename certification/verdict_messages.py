"""The verdict engine's bilingual messages: one explanation and one hint per code.

Templates use `str.format` fields filled by the criterion evaluators. Tests
assert the code in `details["code"]`, never the wording.
"""

from __future__ import annotations

from typing import Any

from certification.errors import placeholders

# code: (explanation zh, explanation en, hint zh, hint en)
MESSAGES: dict[str, tuple[str, str, str, str]] = {
    "loss_alignment_pass": (
        "前 {steps} 步每 {window} 步平均损失的相对误差：均值 {mean:.2%}，最大 {max:.2%}，均在界限内。",
        "Relative error of the {window}-step mean loss over steps 1-{steps}: mean {mean:.2%}, max {max:.2%}, within the bounds.",
        "无需操作。", "Nothing to do.",
    ),
    "loss_alignment_fail": (
        "前 {steps} 步每 {window} 步平均损失的相对误差：均值 {mean:.2%}（上限 {mean_bound:.2%}），最大 {max:.2%}（上限 {max_bound:.2%}，第 {worst_window} 个窗口）。",
        "Relative error of the {window}-step mean loss over steps 1-{steps}: mean {mean:.2%} (bound {mean_bound:.2%}), max {max:.2%} (bound {max_bound:.2%}, window {worst_window}).",
        "检查确定性设置（随机种子、dropout、数据顺序）和算子精度，与参考运行逐步比较损失。",
        "Check the determinism settings (seed, dropout, data order) and kernel precision; compare the loss step by step with the reference run.",
    ),
    "loss_non_finite": (
        "训练损失在第 {steps} 步出现 NaN 或 Inf。",
        "The training loss is NaN or Inf at step(s) {steps}.",
        "检查数值稳定性（混合精度、梯度裁剪、学习率），修复后重新运行。",
        "Check numerical stability (mixed precision, gradient clipping, learning rate) and run again.",
    ),
    "run_too_short": (
        "steps.jsonl 缺少规则包要求的步数：需要第 1-{required} 步，缺少 {missing_count} 步（首个缺失：第 {first_missing} 步）。",
        "steps.jsonl lacks steps the rule pack requires: steps 1-{required} are needed, {missing_count} are missing (first missing: step {first_missing}).",
        "完整运行该工作负载，直到规则包规定的步数。",
        "Run the workload to the number of steps the rule pack sets.",
    ),
    "validation_loss_pass": (
        "验证集损失 {measured:.4f}，参考 {reference:.4f}，绝对误差 {difference:.4f}，上限 {bound}。",
        "Validation loss {measured:.4f}, reference {reference:.4f}, absolute error {difference:.4f}, bound {bound}.",
        "无需操作。", "Nothing to do.",
    ),
    "validation_loss_fail": (
        "验证集损失 {measured:.4f}，参考 {reference:.4f}，绝对误差 {difference:.4f} 超过上限 {bound}。",
        "Validation loss {measured:.4f}, reference {reference:.4f}: absolute error {difference:.4f} exceeds the bound {bound}.",
        "检查训练是否收敛到规定步数，以及验证集是否完整评估（按 token 求平均）。",
        "Check that training reached the prescribed step and that the whole validation set was evaluated (token-level mean).",
    ),
    "lambada_pass": (
        "LAMBADA 准确率 {measured:.2f}%，参考 {reference:.2f}%，差 {difference:+.2f} 个百分点，上限 ±{bound}。",
        "LAMBADA accuracy {measured:.2f}%, reference {reference:.2f}%, difference {difference:+.2f} points, bound ±{bound}.",
        "无需操作。", "Nothing to do.",
    ),
    "lambada_fail": (
        "LAMBADA 准确率 {measured:.2f}%，参考 {reference:.2f}%，差 {difference:+.2f} 个百分点，超过 ±{bound}。",
        "LAMBADA accuracy {measured:.2f}%, reference {reference:.2f}%: difference {difference:+.2f} points exceeds ±{bound}.",
        "确认评估了全部 {items} 条样本，且以完整末词（含前导空格、贪心解码）判定正确。",
        "Check that all {items} passages were evaluated and that an item counts only when every token of the last word (with its leading space) is the greedy prediction.",
    ),
    "rouge_pass": (
        "ROUGE F1（0-100）各项与参考之差均在 ±{bound} 内：{summary}。",
        "Every ROUGE F1 (0-100) is within ±{bound} of the reference: {summary}.",
        "无需操作。", "Nothing to do.",
    ),
    "rouge_fail": (
        "ROUGE F1（0-100）与参考之差超过 ±{bound}：{summary}。",
        "ROUGE F1 (0-100) differs from the reference by more than ±{bound}: {summary}.",
        "确认使用贪心解码、相同的 max_new_tokens，并在解码时去掉特殊符号。",
        "Check greedy decoding, the same max_new_tokens, and that special tokens are removed when decoding.",
    ),
    "throughput_pass": (
        "每卡 tokens/s/TFLOPS 为参考的 {ratio:.1%}，要求至少 {bound:.0%}。",
        "Tokens/s per card per TFLOPS is {ratio:.1%} of the reference; at least {bound:.0%} is required.",
        "无需操作。", "Nothing to do.",
    ),
    "throughput_fail": (
        "每卡 tokens/s/TFLOPS 为参考的 {ratio:.1%}，低于要求的 {bound:.0%}。",
        "Tokens/s per card per TFLOPS is {ratio:.1%} of the reference, below the required {bound:.0%}.",
        "检查并行配置、micro batch、重计算和算子性能；峰值 TFLOPS 以登记的数据手册值为准。",
        "Check the parallel layout, micro-batch size, recomputation and kernel speed; the peak TFLOPS is the registered datasheet value.",
    ),
    "images_throughput_pass": (
        "每卡每秒生成图片数/TFLOPS 为参考的 {ratio:.1%}，要求至少 {bound:.0%}。",
        "Images per second per card per TFLOPS is {ratio:.1%} of the reference; at least {bound:.0%} is required.",
        "无需操作。", "Nothing to do.",
    ),
    "images_throughput_fail": (
        "每卡每秒生成图片数/TFLOPS 为参考的 {ratio:.1%}，低于要求的 {bound:.0%}。",
        "Images per second per card per TFLOPS is {ratio:.1%} of the reference, below the required {bound:.0%}.",
        "检查推理数据类型、注意力算子和调度器步数；分辨率、步数和调度器由规则包固定，峰值 TFLOPS 以登记的数据手册值为准。",
        "Check the inference data type and the attention kernels; resolution, steps and scheduler are fixed by the rule pack, and the peak TFLOPS is the registered datasheet value.",
    ),
    "throughput_not_required": (
        "该认证方向的级别未规定性能要求。",
        "The track's levels set no performance requirement.",
        "无需操作。", "Nothing to do.",
    ),
    "peak_missing": (
        "缺少{side_zh}加速卡的 {data_type} 峰值 TFLOPS。",
        "The {side} card's peak {data_type} TFLOPS is missing.",
        "用 --peak {data_type}=值 和 --reference-peak {data_type}=值 传入登记的峰值。",
        "Pass the registered peaks with --peak {data_type}=VALUE and --reference-peak {data_type}=VALUE.",
    ),
    "human_pass": (
        "人工 GSB 评估：G {good}，S {same}，B {bad}，GSB {gsb:+.1%}，符号检验 p = {p_value:.3f}，由 {signed_off_by} 签署。",
        "Human GSB evaluation: G {good}, S {same}, B {bad}, GSB {gsb:+.1%}, sign test p = {p_value:.3f}, signed off by {signed_off_by}.",
        "无需操作。", "Nothing to do.",
    ),
    "human_fail": (
        "人工 GSB 评估未通过：{reason}（G {good}，S {same}，B {bad}）。",
        "Human GSB evaluation failed: {reason} (G {good}, S {same}, B {bad}).",
        "检查生成质量后重新运行，或请认证人员复核评估。",
        "Check the generation quality and run again, or ask certification staff to review the judgements.",
    ),
    "human_pending": (
        "人工评估尚未完成。",
        "Human evaluation has not been completed yet.",
        "上传结果包后，认证人员会在门户上完成盲评与签署。",
        "After the upload, certification staff judge the blind pairs and sign off on the portal.",
    ),
    "human_disabled": (
        "该规则包未启用人工评估。",
        "This rule pack does not enable human evaluation.",
        "无需操作。", "Nothing to do.",
    ),
    "fixed_hyperparameters_pass": (
        "固定超参数与规则包一致。",
        "The fixed hyperparameters match the rule pack.",
        "无需操作。", "Nothing to do.",
    ),
    "fixed_hyperparameters_fail": (
        "固定超参数与规则包不一致（运行值 / 规则包值）：{keys}。",
        "Fixed hyperparameters differ from the rule pack (run / pack): {keys}.",
        "只能修改规则包列为可调的超参数（如并行方式、micro batch）；恢复这些值后重新运行。",
        "Only the hyperparameters the rule pack lists as free (such as parallel layout and micro-batch) may change; restore these values and run again.",
    ),
    "workload_not_run": (
        "本次运行没有计划工作负载 {workload}（它属于其他方向或更高级别），暂不评判。",
        "This run did not plan workload {workload} (another track or a higher level), so it is not judged yet.",
        "要取得需要它的级别，请运行该方向和级别的配置并上传结果包；已通过的工作负载无需重跑。",
        "To reach the level that needs it, run that track and level and upload the bundle; passed workloads need no rerun.",
    ),
    "workload_missing": (
        "结果包中没有工作负载 {workload}。",
        "The bundle has no workload {workload}.",
        "运行该级别要求的全部工作负载后重新打包。",
        "Run every workload the level requires, then pack the run again.",
    ),
    "workload_not_completed": (
        "工作负载 {workload} 未完成（状态：{status_zh}）。",
        "Workload {workload} has status {status}.",
        "查看 events.jsonl 与日志，修复后重新运行（运行可续跑）。",
        "Read events.jsonl and the log, fix the cause and run again (runs resume).",
    ),
    "records_invalid": (
        "工作负载 {workload} 的记录无效：{problem_zh}。",
        "The records of workload {workload} are invalid: {problem}.",
        "用本版本的 agent 重新运行该工作负载。",
        "Run the workload again with this agent version.",
    ),
    "reference_missing": (
        "没有包含工作负载 {workload} 的参考结果包。",
        "No reference bundle contains workload {workload}.",
        "使用认证人员为该规则包发布的参考结果包。",
        "Use the reference bundles that certification staff published for this rule pack.",
    ),
    "reference_unusable": (
        "参考结果无法使用：{problem_zh}。",
        "The reference result cannot be used: {problem}.",
        "使用认证人员为该规则包发布的参考结果包。",
        "Use the reference bundles that certification staff published for this rule pack.",
    ),
    "reference_mismatch": (
        "与参考结果的运行条件不同，无法比较（厂商 / 参考）：{differences}。",
        "The run conditions differ from the reference, so the results cannot be compared (vendor / reference): {differences}.",
        "使用同一规则包的序列长度、全局 batch 和测量协议重新运行，或使用匹配的参考结果包。",
        "Run again with the rule pack's sequence length, global batch and measurement protocol, or use the matching reference bundle.",
    ),
    "input_digest_mismatch": (
        "工作负载 {workload} 与参考运行读取的输入不同，结果无法比较：{inputs_zh}。",
        "Workload {workload} read other inputs than the reference run, so the results cannot be compared: {inputs_en}.",
        "用规则包固定的文件（sha256 须与规则包一致）重新运行该工作负载；若是参考运行与规则包不一致，请认证人员换用匹配的参考结果包。",
        "Run the workload again with the files the rule pack names (their sha256 must equal the pack's); if the reference run differs from the pack, ask certification staff for a matching reference bundle.",
    ),
    "input_not_recorded": (
        "工作负载 {workload} 的输入摘要只有一方或双方都没有记录，无法确认两次运行读取了相同的文件：{inputs_zh}。",
        "Workload {workload} has inputs whose digest one run or both runs did not record, so it cannot be confirmed that both read the same files: {inputs_en}.",
        "用本版本的 agent 重新运行（它在 run.json 的 inputs 和 config.json 中记录每个输入的摘要）；若缺的是参考运行的记录，请认证人员换用新的参考结果包。",
        "Run again with this agent version, which records every input's digest in run.json `inputs` and config.json; if the reference run lacks the record, ask certification staff for a new reference bundle.",
    ),
    "rule_pack_mismatch": (
        "结果包使用的规则包 {found} 与评判所用的 {expected} 不同。",
        "The bundle was made with rule pack {found}, not {expected}, the pack used for judging.",
        "用同一个规则包运行、打包并评判。",
        "Run, pack and judge with the same rule pack.",
    ),
    "run_length_pass": (
        "steps.jsonl 包含规则包要求的第 1-{required} 步。",
        "steps.jsonl holds steps 1-{required}, as the rule pack requires.",
        "无需操作。", "Nothing to do.",
    ),
    "run_length_epochs_pass": (
        "steps.jsonl 包含第 1-{required} 步，即 config.json 的 epochs 记录给出的 {epochs} 轮、每轮 {steps_per_epoch} 步，轮数与规则包一致。",
        "steps.jsonl contains steps 1-{required}: {epochs} epochs of {steps_per_epoch} steps, as the epochs record of config.json gives them for the rule pack's num_train_epochs.",
        "无需操作。", "Nothing to do.",
    ),
    "epoch_batches_mismatch": (
        "工作负载 {workload} 与参考运行训练的批次不同，结果无法比较。两者 config.json 的 epochs 记录不同（厂商 / 参考运行）：{differences}。",
        "Workload {workload} trained on other batches than the reference run, so the results cannot be compared. The epochs records of their config.json differ (vendor / reference): {differences}.",
        "每轮的顺序只由训练样本对、随机种子和全局 batch 决定。请用规则包的数据集、随机种子和全局 batch 以及与参考运行相同的 agent 版本重新运行该工作负载；若是参考运行有误，请认证人员换用匹配的参考结果包。",
        "Each epoch's order follows only from the train pairs, the seed and the global batch. Run the workload again with the rule pack's data sets, seed and global batch and with the agent version of the reference run; if the reference run is at fault, ask certification staff for a matching reference bundle.",
    ),
    "peak_tflops_mismatch": (
        "结果包 {bundle} 声明的 {data_type} 峰值为 {stated} TFLOPS，与卡登记值 {registered} 不符；评判使用登记值。",
        "Bundle {bundle} states a peak of {stated} {data_type} TFLOPS, but the card registry has {registered}; the verdict uses the registry value.",
        "若数据手册值有误，请联系认证人员更正卡登记；否则修正 agent 配置中的峰值。",
        "If the datasheet value is wrong, ask certification staff to correct the card registry; otherwise fix the peak in the agent's configuration.",
    ),
    "metric_unknown": (
        "规则包引用了未知的指标 {metric}。",
        "The rule pack names an unknown metric {metric}.",
        "修正规则包，或升级到支持该指标的 agent 版本。",
        "Fix the rule pack or upgrade to an agent version that has this metric.",
    ),
}


# code: (zh, en) of why the verdict compares a workload with the reference it names.
REFERENCE_CHOICES: dict[str, tuple[str, str]] = {
    "only_reference": (
        "参考结果包 {reference} 是唯一包含工作负载 {workload} 的参考。",
        "Reference bundle {reference} is the only reference that contains workload {workload}.",
    ),
    "inputs_match": (
        "{count} 个参考结果包包含工作负载 {workload}；{reference} 是其中第一个所有输入摘要都与厂商运行相同的。",
        "{count} reference bundles contain workload {workload}; {reference} is the first of them whose input digests all equal the vendor run's.",
    ),
    "no_inputs_match": (
        "{count} 个参考结果包包含工作负载 {workload}，但没有一个的输入摘要与厂商运行全部相同；使用其中第一个可用的 {reference}。",
        "{count} reference bundles contain workload {workload}, but none has input digests that all equal the vendor run's; {reference} is the first usable one.",
    ),
}


class _Blank(dict):
    """Format mapping that leaves unknown fields visible instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


# Chinese texts of the BundleError codes that reading a verified bundle's records raises, by the error's values.
# The first template whose placeholders the error provides is used. json_invalid leaves out the json
# module's English {problem}.
BUNDLE_READ_ERRORS_ZH: dict[str, tuple[str, ...]] = {
    "json_invalid": ("{value} 第 {line} 行第 {column} 列的 JSON 无效", "{value} 的 JSON 无效"),
    "json_non_finite": ("{value} 第 {line} 行有未加引号的 NaN 或 Infinity", "{value} 中有未加引号的 NaN 或 Infinity"),
    "file_not_in_bundle": ("结果包中没有文件 {value}",),
    "file_changed_after_verification": ("结果包文件在验证后被修改：{value}",),
    "archive_unreadable": ("无法读取结果包文件 {value}",),
}


def bundle_error_zh(error: Any) -> str:
    """Return the Chinese text of a BundleError raised while reading records, or its code and value for other codes."""
    values = {"value": error.value, **error.details}
    for template in BUNDLE_READ_ERRORS_ZH.get(error.code, ()):
        if placeholders(template) <= values.keys():
            return template.format(**values)
    return f"{error.code}：{error.value}"


def render(code: str, **fields: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Return the (explanation, hint) pair for `code`, each as {"zh", "en"}."""
    explanation_zh, explanation_en, hint_zh, hint_en = MESSAGES[code]
    values = _Blank(fields)
    if "problem" in values and "problem_zh" not in values:
        values["problem_zh"] = values["problem"]  # an outcome built without a Chinese problem shows the English one
    explanation = {"zh": explanation_zh.format_map(values), "en": explanation_en.format_map(values)}
    hint = {"zh": hint_zh.format_map(values), "en": hint_en.format_map(values)}
    return explanation, hint


def render_reference_choice(code: str, **fields: Any) -> dict[str, str]:
    """Return why the verdict uses a reference, as {"zh", "en"}."""
    text_zh, text_en = REFERENCE_CHOICES[code]
    values = _Blank(fields)
    return {"zh": text_zh.format_map(values), "en": text_en.format_map(values)}
