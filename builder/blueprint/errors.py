"""The one error type of the blueprint front end: bad input, reported with its key path."""

from __future__ import annotations

import json
import re

from greenboot.errors import UserError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def one_line(text: str) -> str:
    """``text`` with control characters (newlines included) escaped, so it prints as one line."""
    return _CONTROL.sub(lambda m: json.dumps(m.group(0))[1:-1], text)


class BlueprintError(UserError):
    """A blueprint (or its template, variables or distro) is invalid.

    The message is one line and starts with the file and, when there is one, the key path
    (``customizations.user[0].name``) so a person can find the problem without a traceback.
    """

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(one_line(message), exit_code=exit_code)
