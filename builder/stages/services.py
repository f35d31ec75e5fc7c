"""systemd units enabled, disabled or masked in the tree with ``systemctl --root``.

``systemctl --root`` follows each unit's own ``[Install]`` section (WantedBy, Alias, Also) and only
writes symlinks under ``/etc/systemd/system``; it runs no code from the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from builder.blueprint.models import Services
from builder.stages import StageError
from greenboot.external import ToolError, run

UNIT_DIRS = ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system", "usr/lib/systemd/user")


@dataclass(frozen=True)
class ServicesOptions:
    """The blueprint's services plus units the builder itself enables (the agent, greenboot)."""

    services: Services = Services()
    extra_enabled: tuple[str, ...] = ()


def _unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


def _exists(root: Path, unit: str) -> bool:
    if any((root / d / unit).exists() or (root / d / unit).is_symlink() for d in UNIT_DIRS):
        return True
    if "@" in unit:  # instance of a template unit
        prefix, _, rest = unit.partition("@")
        template = f"{prefix}@.{rest.rsplit('.', 1)[-1]}"
        return any((root / d / template).exists() for d in UNIT_DIRS)
    return False


def _systemctl(root: Path, verb: str, unit: str, where: str) -> None:
    try:
        run(["systemctl", f"--root={root}", "--no-reload", verb, unit])
    except ToolError as err:
        raise StageError(f'{where}: systemctl {verb} {unit} failed: {err.stderr.strip() or err}') from err


def apply(root: Path, options: ServicesOptions) -> None:
    """Enable, then disable, then mask (the order osbuild's systemd stage uses)."""
    svc = options.services
    for key, names in (("enabled", svc.enabled), ("disabled", svc.disabled)):
        for i, name in enumerate(names):
            unit = _unit_name(name)
            if not _exists(root, unit):
                raise StageError(
                    f'customizations.services.{key}[{i}]: unit "{unit}" is not in the image; add its package'
                )
    plan = (
        ("enable", [("fieldshift", u) for u in options.extra_enabled]
         + [(f"customizations.services.enabled[{i}]", n) for i, n in enumerate(svc.enabled)]),
        ("disable", [(f"customizations.services.disabled[{i}]", n) for i, n in enumerate(svc.disabled)]),
        ("mask", [(f"customizations.services.masked[{i}]", n) for i, n in enumerate(svc.masked)]),
    )
    for verb, items in plan:
        if not items:
            continue
        try:  # one systemctl call per verb; on failure, one per unit to name the entry that failed
            run(["systemctl", f"--root={root}", "--no-reload", verb, *[_unit_name(n) for _, n in items]])
        except ToolError:
            for where, name in items:
                _systemctl(root, verb, _unit_name(name), where)
    _canonical_links(root)


def _canonical_links(root: Path) -> None:
    """Point enablement links at ``/usr/lib/systemd/...`` as the target's own systemctl would.

    A build host whose systemd still searches ``/lib/systemd`` first (Debian 12) writes ``/lib/...``
    targets; with the ``/usr`` merge both resolve alike, but the canonical form keeps trees identical
    whichever host built them.
    """
    lib = root / "lib"
    if not lib.is_symlink() or os.readlink(lib) != "usr/lib":
        return
    for link in sorted((root / "etc/systemd").rglob("*")):
        if link.is_symlink():
            target = os.readlink(link)
            if target.startswith("/lib/systemd/"):
                link.unlink()
                os.symlink("/usr" + target, link)
