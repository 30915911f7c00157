"""PyYAML's syntax error texts in the user's language.

certification.rulepack keeps PyYAML's English problem and context texts as the
values `yaml_problem` and `yaml_context` of a `yaml_invalid` or
`rule_pack_invalid` error. The common ones are translated here. In Chinese, a
problem without a translation is left out, so the message names only the line
and column, and a context without one is left out of the problem.
"""

from __future__ import annotations

import re

from agent.i18n import N_, _, choose_language

# PyYAML 6.0 problem texts: a pattern of the English text, and its template. The named groups fill the template.
YAML_PROBLEMS = (
    (re.compile(r"mapping values are not allowed here"), N_("a mapping value is not allowed here")),
    (re.compile(r"could not find expected ':'"), N_("the expected ':' was not found")),
    (re.compile(r"found unexpected end of stream"), N_("the file ends before the value is closed")),
    (re.compile(r"found character (?P<character>'.+') that cannot start any token"), N_("the character {character} cannot start a token")),
    (re.compile(r"found undefined alias (?P<name>'.+')"), N_("the alias {name} is not defined")),
    (re.compile(r"found unknown escape character (?P<character>'.+')"), N_("the escape character {character} is unknown")),
    (re.compile(r"could not determine a constructor for the tag (?P<tag>'.+')"), N_("the tag {tag} is not supported")),
    (re.compile(r"found duplicate anchor (?P<name>'.+'); first occurrence"), N_("the anchor {name} is defined twice")),
    (re.compile(r"expected (?P<expected>.+), but (?:found|got) (?P<found>'.+')"), N_("expected {expected}, but found {found}")),
)

# Token names that PyYAML's parser writes in "expected X, but found Y" (yaml/tokens.py). Other tokens are punctuation.
YAML_TOKENS = {
    "'<stream start>'": N_("the start of the file"),
    "'<stream end>'": N_("the end of the file"),
    "'<directive>'": N_("a directive"),
    "'<document start>'": N_("a document start ---"),
    "'<document end>'": N_("a document end ..."),
    "'<block sequence start>'": N_("the start of a block sequence"),
    "'<block mapping start>'": N_("the start of a block mapping"),
    "'<block end>'": N_("the end of a block"),
    "'<alias>'": N_("an alias"),
    "'<anchor>'": N_("an anchor"),
    "'<tag>'": N_("a tag"),
    "'<scalar>'": N_("a scalar"),
}

# Phrases other than token names that PyYAML's parser and scanner write as the expected part of "expected X, but found Y".
YAML_EXPECTED = {
    "the node content": N_("the content of a node"),
    "alphabetic or numeric character": N_("a letter or a digit"),
    "a comment or a line break": N_("a comment or a line break"),
}

# Texts that PyYAML's scanner and parser name as the context of a problem.
YAML_CONTEXTS = (
    N_("while parsing a block mapping"),
    N_("while parsing a block collection"),
    N_("while parsing a block node"),
    N_("while parsing a flow mapping"),
    N_("while parsing a flow sequence"),
    N_("while parsing a flow node"),
    N_("while scanning a simple key"),
    N_("while scanning a quoted scalar"),
    N_("while scanning a double-quoted scalar"),
    N_("while scanning a block scalar"),
    N_("while scanning for the next token"),
    N_("while scanning an alias"),
    N_("while scanning an anchor"),
    N_("while scanning a tag"),
    N_("while constructing a mapping"),
)


def localize_yaml_values(values: dict) -> dict:
    """Return the values of a YAML syntax error with {problem} in the user's language, or without it when it has no translation."""
    if "yaml_problem" not in values or choose_language() == "en":
        return values
    values = dict(values)
    values.pop("problem", None)
    problem = translate_problem(str(values["yaml_problem"]))
    if problem is None:
        return values
    context = values.get("yaml_context")
    if context in YAML_CONTEXTS:
        template = _("{problem} ({context}, which starts at line {line}, column {column})")
        if "context_line" not in values:
            template = _("{problem} ({context})")
        problem = template.format(problem=problem, context=_(context), line=values.get("context_line"), column=values.get("context_column"))
    values["problem"] = problem
    return values


def translate_problem(problem: str) -> str | None:
    """Return PyYAML's English `problem` in the user's language, or None when YAML_PROBLEMS has no pattern for it."""
    for pattern, template in YAML_PROBLEMS:
        match = pattern.fullmatch(problem)
        if match is not None:
            parts = {name: _(YAML_TOKENS[text]) if text in YAML_TOKENS else text for name, text in match.groupdict().items()}
            if "expected" in parts:
                parts["expected"] = _expected_tokens(match.group("expected"))
            return _(template).format(**parts)
    return None


def _expected_tokens(text: str) -> str:
    """Translate PyYAML's expected part: one token name such as "<block end>", or two tokens such as "',' or ']'"."""
    if text in YAML_EXPECTED:
        return _(YAML_EXPECTED[text])
    if f"'{text}'" in YAML_TOKENS:
        return _(YAML_TOKENS[f"'{text}'"])
    tokens = text.split(" or ")
    if len(tokens) != 2:
        return text
    first, second = (_(YAML_TOKENS[token]) if token in YAML_TOKENS else token for token in tokens)
    return _("{first} or {second}").format(first=first, second=second)
