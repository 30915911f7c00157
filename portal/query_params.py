"""Query parameters of listing pages: filters with fixed choices, page numbers, and the errors that name an invalid value.

The public certificate listing, the staff queue and the audit log read their
parameters here, so each responds to an invalid value the same way: the value is
left out, and a ParameterError names it with HTTP 400 (invalid) or 404 (a page
past the last one).
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from portal.errors import ErrorSpec, PortalError
from portal.text import first_control_character

# Longer digit strings are out of range for any realistic listing and are not converted to int.
PAGE_MAX_DIGITS = 9

PARAMETER_ERRORS = {
    "filter_invalid": ErrorSpec(400, _("The filter %(name)s=%(value)s is invalid and was ignored. Use one of: %(allowed)s.")),
    "search_invalid": ErrorSpec(400, _("The search %(name)s=%(value)s contains the control character %(character)s and was ignored. Type the text without it.")),
    "page_invalid": ErrorSpec(400, _("The page %(page)s is invalid. Use a whole number from 1 to %(last)s.")),
    "page_out_of_range": ErrorSpec(
        404,
        ngettext_lazy(
            "The page %(page)s does not exist: there is %(last)s page. Use page 1.",
            "The page %(page)s does not exist: there are %(last)s pages. Use a whole number from 1 to %(last)s.",
            "last",
        ),
    ),
}


class ParameterError(PortalError):
    table = PARAMETER_ERRORS


def shown_value(value: str) -> str:
    """Return `value` quoted with control characters escaped, cut to 100 characters, for an error message."""
    return repr(value[:100])


def read_choice(params, name: str, allowed: tuple[str, ...], errors: list) -> str:
    """Return parameter `name` when it is empty or one of `allowed`; otherwise append `filter_invalid` to `errors` and return ""."""
    value = params.get(name, "")
    if value == "" or value in allowed:
        return value
    errors.append(ParameterError("filter_invalid", name=name, value=shown_value(value), allowed=", ".join(allowed)))
    return ""


def read_search(params, name: str, errors: list) -> str:
    """Return parameter `name` stripped; a value with a control character appends `search_invalid` to `errors` and returns ""."""
    value = params.get(name, "").strip()
    character = first_control_character(value)
    if character is None:
        return value
    errors.append(ParameterError("search_invalid", name=name, value=shown_value(value), character=character))
    return ""


def read_choices(params, name: str, allowed: tuple[str, ...], errors: list) -> list[str]:
    """Return the values of a repeated parameter that are in `allowed`; append `filter_invalid` to `errors` for each other one."""
    chosen = []
    for value in params.getlist(name):
        if read_choice({name: value}, name, allowed, errors):
            chosen.append(value)
    return chosen


def read_page(requested: str, last: int) -> tuple[int, ParameterError | None]:
    """Return the page number to show for the `page` parameter, and the error naming it when it is invalid.

    An empty value is page 1. A value that is not a whole number from 1 up
    gives page 1 and `page_invalid`; a number past `last` gives page `last`
    and `page_out_of_range`.
    """
    if requested == "":
        return 1, None
    invalid = ParameterError("page_invalid", page=shown_value(requested), last=last)
    out_of_range = ParameterError("page_out_of_range", page=shown_value(requested), last=last)
    if not (requested.isascii() and requested.isdigit()):
        return 1, invalid
    if len(requested.lstrip("0")) > PAGE_MAX_DIGITS:
        return last, out_of_range
    number = int(requested)
    if number < 1:
        return 1, invalid
    if number > last:
        return last, out_of_range
    return number, None


def read_paginated_page(paginator, params, errors: list):
    """Return the page of `paginator` that parameter `page` names; append the error to `errors` when it is invalid, and return page 1 or the last page instead."""
    number, error = read_page(params.get("page", ""), paginator.num_pages)
    if error is not None:
        errors.append(error)
    return paginator.page(number)


def response_status(errors: list) -> int:
    """Return the HTTP status of a page with these parameter errors: the first error's status, or 200 without errors."""
    return errors[0].status if errors else 200
