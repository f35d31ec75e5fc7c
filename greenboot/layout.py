"""Where greenboot's files live, resolved under a root directory (``/`` on a device, a temp tree in tests).

``--root DIR`` moves every path below: script directories, ``greenboot.conf``, the grubenv, state
under ``var/lib``, the MOTD under ``run``, and the kernel command line and boot id (read from
``DIR/proc/cmdline`` and ``DIR/proc/sys/kernel/random/boot_id``, which the simulated firmware in the
tests writes). With a root other than ``/`` the root is also the ostree sysroot (``ostree admin
--sysroot=DIR``), the same layout as a device's ``/sysroot`` with ``/boot`` inside it; when
``DIR/proc/cmdline`` names a deployment (``ostree=``), that deployment's tree provides ``/usr`` and
``/etc`` (script directories, greenboot.conf), as it does on the running device. State (``var``),
``run``, ``proc`` and ``boot`` always stay directly under ``DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

USR_DIR = "usr/lib/greenboot"
ETC_DIR = "etc/greenboot"
CONF = "etc/greenboot/greenboot.conf"
STATE_DIR = "var/lib/fieldshift/greenboot"
# GRUB's own grubenv next to its config: Fedora/RHEL ``grub2``, Debian ``grub``.
GRUBENV_CANDIDATES = ("boot/grub2/grubenv", "boot/grub/grubenv")


@dataclass(frozen=True)
class Layout:
    """All paths greenboot reads or writes, for one root."""

    root: Path

    @classmethod
    def at(cls, root: Optional[Union[Path, str]] = None) -> Layout:
        return cls(Path(root) if root is not None else Path("/"))

    @property
    def live(self) -> bool:
        """True when this is the running system (root ``/``), where tools act on the host."""
        return self.root.resolve() == Path("/")

    def path(self, rel: str) -> Path:
        return self.root / rel

    @property
    def system(self) -> Path:
        """The tree that provides ``/usr`` and ``/etc``: the booted deployment under a sysroot root.

        Under ``--root`` that is ``DIR/proc/1/root`` (PID 1's root, i.e. the deployment mounted as
        ``/``; the simulated firmware links it), else the deployment named by ``ostree=`` in
        ``DIR/proc/cmdline``, else ``DIR`` itself.
        """
        if self.live:
            return self.root
        deployment = self.booted_deployment_dir()
        return deployment if deployment is not None else self.root

    def booted_deployment_dir(self) -> Optional[Path]:
        """Under ``--root``: the booted deployment's directory, when it can be told."""
        root = self.root.resolve()
        candidates = []
        pid1 = self.path("proc/1/root")
        if pid1.is_symlink():
            candidates.append(Path(os.path.realpath(pid1)))
        try:
            words = self.cmdline.read_text().split()
        except OSError:
            words = []
        for word in words:
            if word.startswith("ostree="):
                candidates.append(Path(os.path.realpath(self.root / word[len("ostree=") :].lstrip("/"))))
        for target in candidates:
            if (target / "usr").is_dir() and root in target.parents:
                return target
        return None

    def system_path(self, rel: str) -> Path:
        return self.system / rel

    @property
    def conf(self) -> Path:
        return self.system_path(CONF)

    def script_dirs(self, phase: str) -> Tuple[Path, ...]:
        """Directories for ``phase`` in greenboot's order: /usr/lib before /etc."""
        system = self.system
        return (system / f"{USR_DIR}/{phase}", system / f"{ETC_DIR}/{phase}")

    @property
    def state_dir(self) -> Path:
        return self.path(STATE_DIR)

    @property
    def boots_dir(self) -> Path:
        return self.state_dir / "boots"

    @property
    def rollback_record(self) -> Path:
        return self.state_dir / "rollback.json"

    @property
    def motd(self) -> Path:
        return self.path("run/motd.d/boot-status")

    @property
    def cmdline(self) -> Path:
        return self.path("proc/cmdline")

    @property
    def boot_id_file(self) -> Path:
        return self.path("proc/sys/kernel/random/boot_id")

    @property
    def boot_dir(self) -> Path:
        return self.path("boot")

    @property
    def loader_entries(self) -> Path:
        return self.path("boot/loader/entries")

    def grubenv(self, override: Optional[str] = None) -> Path:
        """The grubenv in use: ``override`` (relative to root) or the first existing candidate.

        When none exists yet the Fedora path is returned if ``boot/grub2`` exists, else Debian's.
        """
        if override:
            return self.path(override.lstrip("/"))
        for rel in GRUBENV_CANDIDATES:
            if self.path(rel).is_file():
                return self.path(rel)
        for rel in GRUBENV_CANDIDATES:
            if self.path(rel).parent.is_dir():
                return self.path(rel)
        return self.path(GRUBENV_CANDIDATES[0])
