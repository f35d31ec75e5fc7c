"""The one ``rpm-ostree`` call greenboot makes: ``rpm-ostree rollback`` (live systems only)."""

from __future__ import annotations

import shutil

from greenboot.external import run


def available() -> bool:
    return shutil.which("rpm-ostree") is not None


def rollback() -> None:
    """Make the rollback deployment the default (rpm-ostree swaps deployments 0 and 1)."""
    run(["rpm-ostree", "rollback"])
