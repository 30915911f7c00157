"""`python -m agent loadgen`: measure QPS under a time-to-first-token limit against any completions server."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from agent.errors import EXIT_FAILED, EXIT_OK, EXIT_REMOTE, AgentError
from agent.i18n import _
from agent.inference.loadgen import Endpoint, EndpointError
from agent.inference.search import SearchError, SearchSettings, run_search


logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", required=True,
                        help=_("completions URL of the server, such as http://127.0.0.1:8000/v1/completions"))
    parser.add_argument("--model", required=True, help=_("model name sent in each request"))
    parser.add_argument("--prompts", type=Path, required=True,
                        help=_("prompt file: JSON lines with a 'prompt' string each, used round-robin"))
    parser.add_argument("--settings", default="{}",
                        help=_("search settings as a JSON object (the rule pack's settings.inference), or @FILE"))
    parser.add_argument("--out", type=Path, required=True, help=_("folder for requests.jsonl and search.json"))


def run(args: argparse.Namespace) -> int:
    try:
        endpoint = Endpoint.parse(args.endpoint)
    except EndpointError as error:
        raise AgentError("endpoint_invalid", str(error), _("pass the full URL, such as http://HOST:PORT/v1/completions"))
    settings = _settings(args.settings)
    prompts = _prompts(args.prompts)
    try:
        record = run_search(endpoint, args.model, prompts, settings, args.out)
    except SearchError as error:
        message, hint = error.localized()
        raise AgentError(error.code, message, _("{hint}; the trials so far are in {path}").format(hint=hint, path=args.out / "search.json"),
                         exit_code=EXIT_REMOTE)
    result = record["result"]
    if result["level"] is None:
        print(_("no load level met the TTFT limit; see {path}").format(path=args.out / "search.json"))
        return EXIT_FAILED
    print(_("QPS {qps:.3f} at level {level:g} ({load_model}), p{percentile:g} TTFT {ttft:.3f} s; records in {path}").format(
        qps=result["qps"], level=result["level"], load_model=settings.load_model, percentile=settings.percentile,
        ttft=result["worst_ttft_percentile"], path=args.out))
    return EXIT_OK


def _settings(text: str) -> SearchSettings:
    try:
        data = json.loads(Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text)
        return SearchSettings.from_pack(data)
    except (OSError, json.JSONDecodeError, TypeError, ValueError) as error:
        raise AgentError("loadgen_settings_invalid", _("search settings {value} are invalid: {error}").format(value=repr(text[:80]), error=error),
                         _("pass a JSON object with the keys of the rule pack's settings.inference"))


def _prompts(path: Path) -> list[str]:
    try:
        prompts = [json.loads(line)["prompt"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise AgentError("prompts_invalid", _("prompt file {path} cannot be read: {error}").format(path=path, error=error),
                         _("pass a file of JSON lines, each with a 'prompt' string"))
    if not prompts or not all(isinstance(prompt, str) and prompt for prompt in prompts):
        raise AgentError("prompts_invalid", _("prompt file {path} has no prompts or an empty one").format(path=path),
                         _("give every line a non-empty 'prompt' string"))
    return prompts
