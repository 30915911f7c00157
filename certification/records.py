"""Reading and writing the JSON records of a run, with explicit non-finite numbers.

JSON has no NaN or Infinity. A loss that became NaN must still reach the
verdict engine, so records write non-finite floats as the strings "NaN",
"Infinity" and "-Infinity", and `decode_float` turns them back into floats.
Bare NaN tokens (what Python's json module writes by default) are invalid.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

NON_FINITE_NAMES = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class RecordsInvalid(ValueError):
    """A workload record that is missing or malformed; the criterion fails and names the problem.

    `problem_zh` is the problem in Chinese, for the Chinese explanation; without one it shows the English text.
    """

    def __init__(self, problem: str, problem_zh: str | None = None):
        super().__init__(problem)
        self.problem_zh = problem_zh or problem


class NonFiniteNumberError(ValueError):
    """A bare NaN or Infinity token in JSON text, which records must not contain; `token` is the token as written."""

    def __init__(self, token: str):
        super().__init__(f"bare {token} in JSON; write non-finite numbers as the string \"{token}\"")
        self.token = token


def encode_float(value: float | None) -> float | str | None:
    """Return `value` as a JSON-safe number, or as its name when it is non-finite."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: float | int | str | None) -> float | None:
    """Return the float that `encode_float` encoded; None stays None.

    Raise RecordsInvalid, naming the value in English and Chinese, for any other string, for a value that is not a
    number and for an integer too large for a float.
    """
    if value is None:
        return None
    if isinstance(value, str) and value in NON_FINITE_NAMES:
        return NON_FINITE_NAMES[value]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise RecordsInvalid(f"invalid number {value!r}: expected a number, 'NaN', 'Infinity' or '-Infinity'",
                             f"无效的数值 {value!r}：应为数字、'NaN'、'Infinity' 或 '-Infinity'")
    try:
        return float(value)
    except OverflowError:
        raise RecordsInvalid(f"invalid number {value!r}: it is outside the range of a float", f"无效的数值 {value!r}：超出浮点数的范围") from None


def number_field(record: dict, key: str, where: str, where_zh: str) -> float:
    """Return `record[key]` as float() reads it, or raise RecordsInvalid naming the record (`where`, in English and Chinese), the key and the value."""
    value = record.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RecordsInvalid(f"{where} has {key} {value!r}, not a number", f"{where_zh}的 {key} 是 {value!r}，不是数字") from None
    except OverflowError:
        raise RecordsInvalid(f"{where} has {key} {value!r}, outside the range of a float", f"{where_zh}的 {key} 是 {value!r}，超出浮点数的范围") from None


def integer_field(record: dict, key: str, where: str, where_zh: str) -> int:
    """Return `record[key]` as int() reads it, or raise RecordsInvalid naming the record (`where`, in English and Chinese), the key and the value."""
    value = record.get(key)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # int() raises OverflowError for an infinite float
        raise RecordsInvalid(f"{where} has {key} {value!r}, not an integer", f"{where_zh}的 {key} 是 {value!r}，不是整数") from None


def _reject_constant(name: str) -> Any:
    raise NonFiniteNumberError(name)


def loads(text: str | bytes) -> Any:
    """Parse strict JSON: bare NaN, Infinity and -Infinity raise NonFiniteNumberError."""
    return json.loads(text, parse_constant=_reject_constant)


def json_error_position(error: ValueError) -> tuple[int, int, str]:
    """Return the 1-based line and column where parsing JSON failed with `error`, and the English problem.

    The problem is the json module's message (such as "Expecting value") or "not UTF-8 text". Other
    ValueErrors, such as NonFiniteNumberError, have no position and are placed at line 1, column 1.
    """
    if isinstance(error, json.JSONDecodeError):
        return error.lineno, error.colno, error.msg
    if isinstance(error, UnicodeDecodeError):
        before = error.object[:error.start]
        # The column counts bytes here, because the text cannot be decoded into characters.
        return before.count(b"\n") + 1, error.start - (before.rfind(b"\n") + 1) + 1, "not UTF-8 text"
    return 1, 1, str(error)


def dumps(value: Any) -> str:
    """Serialise to compact JSON; non-finite floats raise ValueError."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def write_json(path: Path, value: Any) -> None:
    """Write `value` as indented UTF-8 JSON, refusing non-finite floats.

    The text goes to a temporary file in the same folder, which then replaces
    `path`, so a process reading the file meanwhile (another rank of a
    launched run) reads the old or the new content, never a part of it.
    """
    path = Path(path)
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=2, sort_keys=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(text + "\n", encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    return loads(Path(path).read_text(encoding="utf-8"))


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append one line per record; the file is flushed so a crash loses at most one line."""
    with open(path, "a", encoding="utf-8") as stream:
        for record in records:
            stream.write(dumps(record) + "\n")
        stream.flush()


def iter_jsonl_lines(lines: Iterable[str | bytes]) -> Iterator[dict]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield loads(line)
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from error


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as stream:
        return list(iter_jsonl_lines(stream))
