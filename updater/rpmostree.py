"""Device-side ``rpm-ostree`` wrapper: the staging backend used when rpm-ostree owns the system."""

from __future__ import annotations

import json
from typing import Any

from greenboot.errors import UserError
from greenboot.external import ToolError, run


class RpmOstreeError(UserError):
    """rpm-ostree refused or failed."""


def _rpm_ostree(*args: str) -> str:
    try:
        return run(["rpm-ostree", *args]).stdout
    except ToolError as err:
        raise RpmOstreeError(f"rpm-ostree {args[0]} failed: {err.message.split(': ', 1)[-1]}") from err


def status() -> dict[str, Any]:
    return json.loads(_rpm_ostree("status", "--json"))


def deploy(checksum: str) -> None:
    """Stage ``checksum`` (already in the system repo) as the next boot, offline (``--cache-only``)."""
    _rpm_ostree("deploy", "--cache-only", checksum)


def rollback() -> None:
    _rpm_ostree("rollback")


def cleanup_pending() -> None:
    """Drop a staged/pending deployment."""
    _rpm_ostree("cleanup", "--pending")


def owns_system() -> bool:
    """True when rpm-ostreed answers on this machine (so its state must not be bypassed)."""
    try:
        status()
    except (UserError, ValueError):
        return False
    return True
