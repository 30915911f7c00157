"""Errors shown to people: a stable code and a translatable sentence per area.

Each area (submissions, certificates) defines one table of `ErrorSpec`s and a
subclass of PortalError that looks codes up in it. Tests assert the code;
the sentence names the value and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.functional import Promise


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    message: str | Promise  # a lazy translation with %(name)s placeholders; ngettext_lazy picks its form from a named parameter


class PortalError(Exception):
    table: dict[str, ErrorSpec] = {}

    def __init__(self, code: str, **params):
        if code not in self.table:
            raise KeyError(f"{type(self).__name__} has no error code {code!r}")
        self.code = code
        self.params = params
        super().__init__(code)

    @property
    def status(self) -> int:
        return self.table[self.code].status

    @property
    def detail(self) -> str:
        # `%` on the lazy message itself, because a lazy plural message picks its form from the parameters.
        return str(self.table[self.code].message % self.params)

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"
