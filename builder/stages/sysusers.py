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
    """Nothing to choose: every ``sysusers.d`` file in the tree is applied."""

    enabled: bool = True


def apply(root: Path, options: SysusersOptions = SysusersOptions()) -> None:
    """Create the declared system users and groups in the tree's ``/etc`` account files."""
    if not options.enabled or not any((root / "usr/lib/sysusers.d").glob("*.conf")):
        return
    run(["systemd-sysusers", f"--root={root}"])
