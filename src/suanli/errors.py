"""Errors a user can act on.

A `UserError` is shown as one line and exit code 2 by the CLI; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

from typing import Any


def short_repr(value: Any, limit: int = 80) -> str:
    """repr() on one line, cut to `limit` characters, for error messages."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# every character str.splitlines() breaks at, written as its escape
_BREAKS = {ord(c): c.encode("unicode_escape").decode() for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """`text` with its line breaks written as escapes: a message quotes user input (a field name,
    a file name) that may hold them, and a refusal is one line (fuzzing found a YAML key with one)."""
    return text.translate(_BREAKS)


class UserError(Exception):
    """A mistake in the user's input: printed as one line, exit code 2."""

    def __init__(self, message: object = "") -> None:
        super().__init__(one_line(str(message)))


class ScenarioError(UserError):
    """A bad scenario: names the file, the path to the field and the offending value."""

    def __init__(self, file: str, path: str, message: str, value: Any = ..., note: str = ""):
        self.file, self.path, self.value = file, path, value
        where = f"{file}: {path}" if path else file
        got = "" if value is ... else f" (got {short_repr(value)})"
        super().__init__(f"{where}: {message}{got}{note}")
