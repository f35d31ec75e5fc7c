"""System accounts that packages declare in ``/usr/lib/sysusers.d``, created with ``systemd-sysusers --root``.

Real RPMs create them in scriptlets; doing it here from the declarative files keeps the install free of
chroots. Existing entries (from the parent commit, see :mod:`builder.stages.passwd_preserve`) win, so
ids stay stable across builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from greenboot.external import run


@dataclass(frozen=True)
class SysusersOptions:
    """Every ``sysusers.d`` file in the tree is applied; ``source_date_epoch`` dates the shadow entries."""

    enabled: bool = True
    source_date_epoch: int | None = None


def apply(root: Path, options: SysusersOptions = SysusersOptions()) -> None:
    """Create the declared system users and groups in the tree's ``/etc`` account files."""
    if not options.enabled or not any((root / "usr/lib/sysusers.d").glob("*.conf")):
        return
    env = {"SOURCE_DATE_EPOCH": str(options.source_date_epoch)} if options.source_date_epoch is not None else None
    run(["systemd-sysusers", f"--root={root}"], env=env)
