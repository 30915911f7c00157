"""Write the Stable Diffusion demo data from the handwritten digits that scikit-learn ships.

scikit-learn's `load_digits` reads a copy of the UCI "Optical Recognition of
Handwritten Digits" test set that is bundled with the package, so nothing is
downloaded. The output is deterministic: the same scikit-learn data gives the
same bytes, and the sha256 of both files is recorded in the rule packs.

    python data/sd/make_digits.py            # rewrite both files
    python data/sd/make_digits.py --check    # exit 1 when a file differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGES_FILE = HERE / "digits_captions.jsonl"
PROMPTS_FILE = HERE / "digit_prompts.jsonl"
ZH_NUMERALS = "零一二三四五六七八九"


def caption_en(label: int) -> str:
    return f"a handwritten digit {label}, white on black"


def caption_zh(label: int) -> str:
    return f"黑底白字的手写数字{ZH_NUMERALS[label]}"


def image_lines() -> list[str]:
    """Return one JSON line per digit image, in scikit-learn's order: its 8x8 pixels (0-16), label and captions."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    lines = []
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        row = {
            "index": index,
            "label": int(label),
            "pixels": [[int(value) for value in line] for line in pixels],
            "caption_en": caption_en(int(label)),
            "caption_zh": caption_zh(int(label)),
        }
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    return lines


def prompt_lines() -> list[str]:
    """Return the prompt set: each digit once in English and once in Chinese, with a fixed seed per prompt."""
    lines = []
    for language, caption in (("en", caption_en), ("zh", caption_zh)):
        for label in range(10):
            row = {"id": f"{language}-{label}", "language": language, "prompt": caption(label), "seed": 1000 + label}
            lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing them")
    args = parser.parse_args()
    expected = {IMAGES_FILE: "\n".join(image_lines()) + "\n", PROMPTS_FILE: "\n".join(prompt_lines()) + "\n"}
    if args.check:
        differing = [path.name for path, text in expected.items() if not path.is_file() or path.read_text(encoding="utf-8") != text]
        for name in differing:
            print(f"{name} differs from what scikit-learn's digits give; rerun without --check", file=sys.stderr)
        return 1 if differing else 0
    for path, text in expected.items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
