"""The one error type of the blueprint front end: bad input, reported with its key path."""

from __future__ import annotations

from greenboot.errors import UserError


class BlueprintError(UserError):
    """A blueprint (or its template, variables or distro) is invalid.

    The message is one line and starts with the file and, when there is one, the key path
    (``customizations.user[0].name``) so a person can find the problem without a traceback.
    """
