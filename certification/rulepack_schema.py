"""Stable codes and values for the JSON Schema errors of a rule pack.

jsonschema writes English sentences such as "'lots' is not of type 'number'".
The agent shows problems in Chinese too, so each error of a common keyword
gets a code (`schema_type`, `schema_minimum`, ...) and language-neutral values:
JSON type names, numbers, key names and values written as YAML scalars. An
error of another keyword (oneOf, uniqueItems, ...) gets `schema_invalid` with
only the keyword, so a translation can name the keyword and leave the English
sentence out.
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

# jsonschema (4.26) names the missing key of a `required` error only in its message.
REQUIRED_MESSAGE = re.compile(r"^(?P<key>'.*'|\".*\") is a required property$")


def schema_problem(error: jsonschema.ValidationError) -> tuple[str, dict[str, str]]:
    """Return the code and values that describe one jsonschema error, such as ("schema_type", {...})."""
    keyword = str(error.validator)
    instance = error.instance
    # A mapping or list is left out of the values, because its text could be long; templates without {value} fit it.
    value = {} if isinstance(instance, (dict, list)) else {"value": value_text(instance)}
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
