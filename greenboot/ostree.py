"""The ``ostree admin`` calls greenboot needs: list deployments, find the booted one, make a rollback stick.

On the live system the tool acts on ``/sysroot``; under ``--root DIR`` every call gets
``--sysroot=DIR``. The booted deployment is found the way ostree-prepare-root does: the ``ostree=``
kernel argument (``/ostree/boot.N/<os>/<bootcsum>/<i>``) is a symlink chain ending in
``ostree/deploy/<os>/deploy/<checksum>.<serial>``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from greenboot.external import run
from greenboot.layout import Layout

_STATUS = re.compile(r"^([* ]) (\S+) ([0-9a-f]{64})\.(\d+)")
_VERSION = re.compile(r"^\s+Version: (\S+)")


@dataclass(frozen=True)
class Deployment:
    """One deployment; ``index`` 0 is the default, 1 the rollback."""

    index: int
    osname: str
    checksum: str
    serial: int
    version: str = ""

    @property
    def name(self) -> str:
        return f"{self.checksum}.{self.serial}"

    def to_json(self) -> dict:
        return {"osname": self.osname, "checksum": self.checksum, "serial": self.serial, "version": self.version}


def _admin(layout: Layout, *args: str) -> str:
    argv = ["ostree", "admin", *args]
    if not layout.live:
        argv.append(f"--sysroot={layout.root}")
    return run(argv).stdout


def status(layout: Layout) -> List[Deployment]:
    """Deployments in boot order, parsed from ``ostree admin status``."""
    deployments: List[Deployment] = []
    for line in _admin(layout, "status").splitlines():
        m = _STATUS.match(line)
        if m:
            deployments.append(Deployment(len(deployments), m.group(2), m.group(3), int(m.group(4))))
            continue
        v = _VERSION.match(line)
        if v and deployments:
            last = deployments[-1]
            deployments[-1] = Deployment(last.index, last.osname, last.checksum, last.serial, v.group(1))
    return deployments


def ostree_karg(layout: Layout) -> str:
    """The ``ostree=`` kernel argument of the running boot ('' when there is none)."""
    try:
        cmdline = layout.cmdline.read_text()
    except OSError:
        return ""
    m = re.search(r"(?:^|\s)ostree=(\S+)", cmdline)
    return m.group(1) if m else ""


def booted_name(layout: Layout) -> str:
    """``<checksum>.<serial>`` of the booted deployment, from the ``ostree=`` argument ('' if unknown)."""
    karg = ostree_karg(layout)
    if not karg:
        return ""
    # On a live system the physical root is /sysroot; under --root the root is the sysroot.
    base = Path("/sysroot") if layout.live else layout.root
    link = base / karg.lstrip("/")
    try:
        target = Path(os.path.realpath(link))
    except OSError:
        return ""
    if not re.fullmatch(r"[0-9a-f]{64}\.\d+", target.name):
        return ""
    return target.name


def booted(layout: Layout, deployments: Optional[List[Deployment]] = None) -> Optional[Deployment]:
    """The booted deployment among ``deployments`` (None when it cannot be told)."""
    name = booted_name(layout)
    for dep in deployments if deployments is not None else status(layout):
        if dep.name == name:
            return dep
    return None


def supports_set_default() -> bool:
    """``ostree admin set-default`` exists from ostree 2023.x on."""
    proc = run(["ostree", "admin", "--help"], check=False)
    return "set-default" in (proc.stdout or "") + (proc.stderr or "")


def set_default(layout: Layout, index: int) -> None:
    _admin(layout, "set-default", str(index))


def undeploy(layout: Layout, index: int) -> None:
    _admin(layout, "undeploy", str(index))
