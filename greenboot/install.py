"""Install fieldshift-greenboot's systemd units, masks and optional pieces into an image tree.

Used by the image builder (and ``fieldshift-greenboot --root TREE install``). The units carry
greenboot's own unit names and go to ``etc/systemd/system``, where they take precedence over the
greenboot package's units in ``usr/lib/systemd/system`` (microshift-greenboot depends on that package),
so a tree with both behaves as fieldshift-greenboot. Enablement follows each unit's ``[Install]``
section as ``systemctl enable`` would, as symlinks in ``etc/systemd/system/<target>.wants|requires``.
Masked: greenboot's ``greenboot-task-runner.service`` (our set-success unit runs green.d) and the
``grub-boot-success.timer`` user unit (it would mark any 2-minute login as a good boot).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict, List

DATA = Path(__file__).parent / "data"
UNITS_DIR = DATA / "systemd"
GRUB_MENU_UNIT = "fieldshift-grub-menu.service"
MASKED_SYSTEM = ("greenboot-task-runner.service",)
MASKED_USER = ("grub-boot-success.timer",)
MICROSHIFT_CHECK = "usr/lib/greenboot/check/required.d/40_microshift_running_check.sh"


def unit_files(grub_menu: bool = False) -> List[Path]:
    """The unit files shipped in the package (the GRUB menu unit only for GRUBs without blscfg)."""
    return sorted(p for p in UNITS_DIR.iterdir() if p.is_file() and (grub_menu or p.name != GRUB_MENU_UNIT))


def install_section(unit: Path) -> Dict[str, List[str]]:
    """``WantedBy``/``RequiredBy`` of a unit file's ``[Install]`` section."""
    found: Dict[str, List[str]] = {"WantedBy": [], "RequiredBy": []}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Install" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip() in found:
                found[key.strip()] += value.split()
    return found


def _symlink(link: Path, target: str) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)
    return link


def install_into(root: Path, *, grub_menu: bool = False, microshift: bool = False) -> List[Path]:
    """Copy units, enable them, mask what defeats counting; return the paths written under ``root``."""
    written: List[Path] = []
    system = root / "etc" / "systemd" / "system"
    system.mkdir(parents=True, exist_ok=True)
    for unit in unit_files(grub_menu):
        dest = system / unit.name
        shutil.copyfile(unit, dest)
        dest.chmod(0o644)
        written.append(dest)
        for key, suffix in (("WantedBy", "wants"), ("RequiredBy", "requires")):
            for target in install_section(unit)[key]:
                written.append(_symlink(system / f"{target}.{suffix}" / unit.name, f"../{unit.name}"))
    for name in MASKED_SYSTEM:
        written.append(_symlink(system / name, "/dev/null"))
    for name in MASKED_USER:
        written.append(_symlink(root / "etc" / "systemd" / "user" / name, "/dev/null"))
    if microshift:
        script = root / MICROSHIFT_CHECK
        script.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / "greenboot" / "40_microshift_running_check.sh", script)
        script.chmod(0o755)
        written.append(script)
    return written
