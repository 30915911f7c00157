"""Paddle workloads by kind. Importing this package imports Paddle and PaddleNLP."""

import warnings

# Warnings unrelated to the run: Paddle 3.3 warns about a missing
# ccache and setuptools on import, and PaddleNLP 3.0.0b4's LLaMA calls a
# swiglu that Paddle 3.3 marks deprecated.
warnings.filterwarnings("ignore", message="No ccache found")
warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
warnings.filterwarnings("ignore", message=r"(?s).*swiglu")

from agent.workloads import finetune, inference, pretrain, sd  # noqa: E402

RUNNERS = {
    "pretrain": pretrain.run,
    "sft": finetune.run_sft,
    "lora": finetune.run_lora,
    "sd_sft": sd.run_sft,
    "sd_infer": sd.run_infer,
    "infer": inference.run,
}
