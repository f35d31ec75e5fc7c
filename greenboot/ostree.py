"""The ``ostree admin`` calls greenboot needs: list deployments, find the booted one, make a rollback stick.

On the live system the tool acts on ``/sysroot``; under ``--root DIR`` every call gets
``--sysroot=DIR``. The booted deployment is found the way ostree-prepare-root does: the ``ostree=``
kernel argument (``/ostree/boot.N/<os>/<bootcsum>/<i>``) is a symlink chain ending in
``ostree/deploy/<os>/deploy/<checksum>.<serial>``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Tuple

from greenboot.external import run
from greenboot.layout import Layout

# ``ostree admin status`` prints, per deployment (ostree src/ostree/ot-admin-builtin-status.c,
# deployment_print_status): "<* if booted> <osname> <checksum>.<serial>[ (staged|pending|rollback)]",
# then indented detail lines, "    Version: <version>" among them when the commit has one.
_STATUS = re.compile(r"^([* ]) (\S+) ([0-9a-f]{64})\.(\d+)(?: \(([^)]*)\))?")
_VERSION = re.compile(r"^\s+Version: (.*)$")
_DEPLOY_NAME = re.compile(r"[0-9a-f]{64}\.\d+")


@dataclass(frozen=True)
class Deployment:
    """One deployment in bootloader order: ``index`` 0 boots by default, 1 is the rollback."""

    index: int
    osname: str
    checksum: str
    serial: int
    version: str = ""
    #: what ostree prints in parentheses after the name: "staged", "pending" or "rollback"
    flags: Tuple[str, ...] = ()
    #: marked ``*`` by ostree: the deployment the running system booted
    booted: bool = False

    @property
    def name(self) -> str:
        """``<checksum>.<serial>``: the deployment directory name, unique within an os."""
        return f"{self.checksum}.{self.serial}"

    @property
    def id(self) -> str:
        """The same as :attr:`name` (the updater's word for it)."""
        return self.name

    @property
    def rpm_ostree_id(self) -> str:
        """The id rpm-ostree (and MicroShift's backups) use: ``<osname>-<checksum>.<serial>``."""
        return f"{self.osname}-{self.name}"

    @property
    def staged(self) -> bool:
        return "staged" in self.flags

    def to_json(self) -> dict:
        return {"osname": self.osname, "checksum": self.checksum, "serial": self.serial, "version": self.version}


def parse_status(text: str) -> List[Deployment]:
    """Deployments in boot order from the output of ``ostree admin status``."""
    deployments: List[Deployment] = []
    for line in text.splitlines():
        m = _STATUS.match(line)
        if m:
            flags = tuple(f.strip() for f in (m.group(5) or "").split(",") if f.strip())
            deployments.append(
                Deployment(len(deployments), m.group(2), m.group(3), int(m.group(4)), "", flags, m.group(1) == "*")
            )
            continue
        v = _VERSION.match(line)
        if v and deployments:
            deployments[-1] = replace(deployments[-1], version=v.group(1).strip())
    return deployments


def _admin(layout: Layout, *args: str) -> str:
    argv = ["ostree", "admin", *args]
    if not layout.live:
        argv.append(f"--sysroot={layout.root}")
    return run(argv).stdout


def status(layout: Layout) -> List[Deployment]:
    """Deployments in boot order, parsed from ``ostree admin status``."""
    return parse_status(_admin(layout, "status"))


def ostree_karg(layout: Layout) -> str:
    """The ``ostree=`` kernel argument of the running boot ('' when there is none)."""
    try:
        cmdline = layout.cmdline.read_text()
    except OSError:
        return ""
    m = re.search(r"(?:^|\s)ostree=(\S+)", cmdline)
    return m.group(1) if m else ""


def booted_name(layout: Layout) -> str:
    """``<checksum>.<serial>`` of the booted deployment ('' if unknown).

    Live: the deployment directory that is ``/`` (same device and inode, as ostree itself decides),
    else the ``ostree=`` argument. Under ``--root``: :meth:`Layout.booted_deployment_dir`.
    """
    if not layout.live:
        found = layout.booted_deployment_dir()
        return found.name if found is not None and _DEPLOY_NAME.fullmatch(found.name) else ""
    name = deployment_at(Path("/sysroot"), Path("/"))
    if name:
        return name
    karg = ostree_karg(layout)
    if not karg:
        return ""
    target = Path(os.path.realpath(Path("/sysroot") / karg.lstrip("/")))
    return target.name if _DEPLOY_NAME.fullmatch(target.name) else ""


def deployment_at(sysroot: Path, root: Path) -> str:
    """The deployment of ``sysroot`` whose directory is ``root`` (same device and inode), or ''."""
    try:
        want = root.stat()
        for osdir in (sysroot / "ostree" / "deploy").iterdir():
            for dep in (osdir / "deploy").iterdir():
                st = dep.stat()
                if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino) and _DEPLOY_NAME.fullmatch(dep.name):
                    return dep.name
    except OSError:
        pass
    return ""


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
