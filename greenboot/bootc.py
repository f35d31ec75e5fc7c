"""The one ``bootc`` call greenboot makes: ``bootc rollback`` (live systems only)."""

from __future__ import annotations

import shutil

from greenboot.external import run


def available() -> bool:
    return shutil.which("bootc") is not None


def rollback() -> None:
    """Make the rollback deployment the default for the next boot."""
    run(["bootc", "rollback"])
