"""Stable codes and values for the JSON Schema errors of a rule pack.

jsonschema writes English sentences such as "'lots' is not of type 'number'".
The agent shows problems in Chinese too, so each error of a common keyword
gets a code (`schema_type`, `schema_minimum`, ...) and language-neutral values:
JSON type names, numbers, key names and values written as YAML scalars. An
error of another keyword (oneOf, uniqueItems, ...) gets `schema_invalid` with
only the keyword, so a translation can name the keyword and leave the English
sentence out.

`SchemaErrorLocations` tells which parts of a pack the schema found well-formed,
so that the cross-reference checks can run on those parts in the same pass.
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

# JSON Schema keywords whose errors carry a value limit, by the code of their errors.
LIMIT_CODES = {
    "minimum": "schema_minimum",
    "maximum": "schema_maximum",
    "exclusiveMinimum": "schema_exclusive_minimum",
    "exclusiveMaximum": "schema_exclusive_maximum",
    "minItems": "schema_min_items",
    "maxItems": "schema_max_items",
    "minLength": "schema_min_length",
    "minProperties": "schema_min_properties",
}

# The rule pack schema's `sha256_or_unset`: a digest, or null while a draft pack has not pinned the file yet.
SHA256_OR_UNSET = [{"$ref": "#/$defs/sha256"}, {"type": "null"}]
SHA256_MESSAGE = ("{value} is not a sha256 digest: write its 64 hexadecimal digits (0-9, a-f) in quotes, "
                  "so that YAML does not read them as a number, or null in a draft pack")

# jsonschema (4.26) names the missing key of a `required` error only in its message.
REQUIRED_MESSAGE = re.compile(r"^(?P<key>'.*'|\".*\") is a required property$")


def schema_problem(error: jsonschema.ValidationError) -> tuple[str, dict[str, str]]:
    """Return the code and values that describe one jsonschema error, such as ("schema_type", {...})."""
    keyword = str(error.validator)
    instance = error.instance
    # A mapping or list is left out of the values, because its text could be long; templates without {value} fit it.
    value = {} if isinstance(instance, (dict, list)) else {"value": value_text(instance)}
    if keyword == "anyOf" and error.validator_value == SHA256_OR_UNSET:
        # jsonschema's anyOf message names no alternative; YAML reads unquoted digits such as 0000 as the integer 0.
        return "schema_sha256", {"value": value_text(instance)}
    if keyword == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return "schema_type", {**value, "type": " / ".join(expected), "found": json_type(instance)}
    if keyword in LIMIT_CODES:
        return LIMIT_CODES[keyword], {**value, "limit": value_text(error.validator_value)}
    if keyword == "enum":
        return "schema_enum", {**value, "choices": ", ".join(value_text(choice) for choice in error.validator_value)}
    if keyword == "const":
        return "schema_const", {**value, "expected": value_text(error.validator_value)}
    if keyword == "required":
        return "schema_required", {"key": _missing_key(error)}
    if keyword == "additionalProperties":
        return "schema_additional_properties", {"keys": ", ".join(_unexpected_keys(error))}
    if keyword == "pattern":
        return "schema_pattern", {"value": value_text(instance), "pattern": str(error.validator_value)}
    return "schema_invalid", {"keyword": keyword}


def schema_message(error: jsonschema.ValidationError, code: str, values: dict[str, str]) -> str:
    """Return the English sentence of a schema error: jsonschema's own, except for a code that has a clearer one here."""
    if code == "schema_sha256":
        return SHA256_MESSAGE.format(**values)
    return error.message


def value_text(value: Any) -> str:
    """Write a scalar as a pack writes it (strings in double quotes), and a mapping or list as its JSON type name."""
    if isinstance(value, (dict, list)):
        return json_type(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def json_type(value: Any) -> str:
    """Return the JSON Schema type name of a parsed YAML value: object, array, string, integer, number, boolean or null."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _missing_key(error: jsonschema.ValidationError) -> str:
    match = REQUIRED_MESSAGE.match(error.message)
    if match:
        return match["key"][1:-1]
    present = error.instance if isinstance(error.instance, dict) else {}
    return ", ".join(str(key) for key in error.validator_value if key not in present)


def _unexpected_keys(error: jsonschema.ValidationError) -> list[str]:
    """Return the keys of the mapping that neither `properties` nor `patternProperties` of its schema allow."""
    allowed = error.schema.get("properties", {})
    patterns = list(error.schema.get("patternProperties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    return sorted(str(key) for key in instance
                  if key not in allowed and not any(re.search(pattern, str(key)) for pattern in patterns))


class SchemaErrorLocations:
    """The paths of a pack's schema errors, to tell which parts a cross-reference check may read.

    A path is a tuple of mapping keys, such as ("workloads", "sft-llama"). A `required` error lies at the
    missing key's path rather than at its parent, so that a part counts as ill-formed when a key it must
    have is missing.
    """

    def __init__(self, data: Any, errors: list[jsonschema.ValidationError]):
        self.data = data
        self.paths = [path for error in errors for path in _error_paths(error)]

    def clean(self, *paths: tuple[str, ...]) -> bool:
        """True when each path's parents are mappings and no schema error lies at or under it; an optional key may be absent."""
        return all(self._parent_is_mapping(path) and not any(error[:len(path)] == path for error in self.paths) for path in paths)

    def named_mappings(self, *paths: tuple[str, ...]) -> bool:
        """True when each path is a mapping of mappings, such as `models`, whatever errors lie deeper.

        That is enough for a check that only looks names up in it or reads an entry's keys with `get`.
        """
        for path in paths:
            value = self._value(path)
            if not isinstance(value, dict) or not all(isinstance(entry, dict) for entry in value.values()):
                return False
        return True

    def _parent_is_mapping(self, path: tuple[str, ...]) -> bool:
        return isinstance(self._value(path[:-1]), dict)

    def _value(self, path: tuple[str, ...]) -> Any:
        value = self.data
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value


def _error_paths(error: jsonschema.ValidationError) -> list[tuple[Any, ...]]:
    """Return where an error lies: its instance path, or for a `required` error the path of each missing key."""
    path = tuple(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [key for key in error.validator_value if key not in error.instance]
        return [(*path, key) for key in missing] or [path]
    return [path]
