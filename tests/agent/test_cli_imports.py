"""The command line imports Paddle only for the commands that train or serve a model.

Each check runs in a fresh interpreter, because the test process has long since
imported Paddle for other tests, and reports which of the heavy packages
`sys.modules` contains afterwards.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import build_parser
from agent.commands import COMMANDS
from agent.errors import EXIT_USAGE
from tests.certification.runfolder import build_run

REPOSITORY = Path(__file__).resolve().parents[2]
TRAINING_PACKAGES = ("paddle", "paddlenlp", "ppdiffusers")
# The verdict engine's ROUGE loads NLTK and SciPy, which cost seconds of start-up. Only `check` needs them, and only to judge.
VERDICT_PACKAGES = ("rouge_score", "nltk", "scipy")

# Code run in the fresh interpreter: it runs `steps`, then prints the heavy top-level packages that were imported.
# A "main" step may give the exit code it expects as a third item (default 0).
REPORT_IMPORTS = """
import json, sys
from agent.cli import main, parse_arguments

def run_steps(steps, heavy):
    for kind, argv, *expected in steps:
        if kind == "parse":
            parse_arguments(argv)
            continue
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        if code != (expected[0] if expected else 0):
            raise SystemExit(f"{argv} exited with {code}")
    print(json.dumps(sorted({name.split('.')[0] for name in sys.modules} & set(heavy))))
"""


def imported_after(steps: list[tuple], heavy: tuple[str, ...]) -> list[str]:
    code = REPORT_IMPORTS + f"\nrun_steps({steps!r}, {list(heavy)!r})\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, timeout=150)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


PARSE_CASES = [
    ["run", "--profile", "demo", "--out", "runs/x"],
    ["bundle", "runs/x", "--key", "vendor.key"],
    ["verify", "x.tar", "--public-key", "vendor.pub"],
    ["check", "x.tar", "--reference", "r.tar", "--public-key", "vendor.pub"],
    ["upload", "x.tar", "--portal", "http://127.0.0.1:9", "--token", "t"],
    ["keygen", "--out", "vendor.key"],
    ["validate-pack", "pack.yaml"],
    ["loadgen", "--endpoint", "http://127.0.0.1:9/v1/completions", "--model", "m", "--prompts", "p.jsonl", "--out", "o"],
]


@pytest.mark.parametrize("argv", PARSE_CASES)
def test_parsing_imports_no_paddle(argv):
    assert imported_after([("parse", argv)], TRAINING_PACKAGES + VERDICT_PACKAGES) == []


def test_parse_cases_cover_every_command():
    assert [argv[0] for argv in PARSE_CASES] == list(COMMANDS)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_parser_builds(name):
    args = build_parser(name).parse_args(next(argv for argv in PARSE_CASES if argv[0] == name))

    assert callable(args.handler)
    assert args.command == name


def test_help_imports_no_paddle():
    steps = [("main", ["--help"]), ("main", ["check", "--help"]), ("main", ["run", "--help"])]

    assert imported_after(steps, TRAINING_PACKAGES + VERDICT_PACKAGES) == []


# Bad --set values of `run`, each rejected by a check that needs no Paddle.
BAD_SETTINGS = ["bad_key=1", "learning_rate=0.1", "tensor_parallel_degree=x", "per_device_train_batch_size=3"]


@pytest.mark.parametrize("assignment", BAD_SETTINGS)
def test_bad_setting_rejected_without_paddle(tmp_path, assignment):
    argv = ["run", "--profile", "tiny", "--out", str(tmp_path / "run"), "--set", assignment]

    assert imported_after([("main", argv, EXIT_USAGE)], TRAINING_PACKAGES) == []
    assert not (tmp_path / "run").exists()


def test_signing_commands_import_no_paddle(tmp_path):
    run_dir = build_run(tmp_path / "run")
    key, bundle = tmp_path / "vendor.key", tmp_path / "run.tar"
    steps = [
        ("main", ["keygen", "--out", str(key)]),
        ("main", ["validate-pack", str(REPOSITORY / "certification" / "rulepacks" / "demo-2026.1.yaml")]),
        ("main", ["bundle", str(run_dir), "--key", str(key), "--out", str(bundle)]),
        ("main", ["verify", str(bundle), "--public-key", f"{key}.pub"]),
    ]

    assert imported_after(steps, TRAINING_PACKAGES + VERDICT_PACKAGES) == []


def test_check_imports_no_paddle(tmp_path):
    run_dir = build_run(tmp_path / "run")
    key, bundle = tmp_path / "vendor.key", tmp_path / "run.tar"
    steps = [
        ("main", ["keygen", "--out", str(key)]),
        ("main", ["bundle", str(run_dir), "--key", str(key), "--out", str(bundle)]),
        ("main", ["check", str(bundle), "--reference", str(bundle), "--public-key", f"{key}.pub",
                  "--peak", "fp32=1", "--reference-peak", "fp32=1"]),
    ]

    assert imported_after(steps, TRAINING_PACKAGES) == []
