"""Staging backends: how a pulled commit becomes the next boot, and how a deployment is dropped.

``ostree``: ``ostree admin deploy``; with ``--stage`` on a booted system whose finalizer
(``ostree-finalize-staged.service``) runs at shutdown, otherwise a direct, non-staged deploy (the only
way for a sysroot in a directory). ``rpm-ostree``: ``rpm-ostree deploy`` / ``rollback`` / ``cleanup``
when rpm-ostree owns the system, so its daemon's view stays true. ``auto`` picks rpm-ostree when the
tool exists and the sysroot is the running system, else ostree.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from greenboot.external import run
from updater import rpmostree
from updater.ostree import Deployment, Sysroot


@dataclass
class OstreeBackend:
    sysroot: Sysroot
    staged: bool
    name: str = "ostree"

    def stage(self, osname: str, checksum: str) -> None:
        self.sysroot.deploy(osname, checksum, stage=self.staged)

    def arm_finalizer(self) -> None:
        """Make sure a staged deployment is finalized at the next shutdown.

        ostree finalizes it when ``ostree-finalize-staged.service`` stops; its ``.path`` unit starts the
        service asynchronously after ``deploy --stage``, and a reboot right after staging can win that
        race (the update is then silently dropped: seen in the VM tier). rpm-ostree starts the unit
        itself; here we do. Idempotent: starting an active unit changes nothing.
        """
        if self.staged:
            run(["systemctl", "start", "ostree-finalize-staged.service"], timeout=120)

    def discard(self, deployment: Deployment) -> None:
        self.sysroot.undeploy(deployment.index)

    def rollback_to(self, previous: Deployment, osname: str) -> None:
        """Make ``previous`` boot next: ``set-default`` where ostree has it, else deploy its commit again."""
        if self.sysroot.supports_set_default():
            self.sysroot.set_default(previous.index)
        else:
            self.sysroot.deploy(osname, previous.checksum, stage=self.staged)


@dataclass
class RpmOstreeBackend:
    sysroot: Sysroot
    name: str = "rpm-ostree"

    def stage(self, osname: str, checksum: str) -> None:
        rpmostree.deploy(checksum)

    def arm_finalizer(self) -> None:
        """rpm-ostree's daemon starts ``ostree-finalize-staged.service`` when it stages."""

    def discard(self, deployment: Deployment) -> None:
        if deployment.index == 0 and deployment.staged:
            rpmostree.cleanup_pending()
        else:
            self.sysroot.undeploy(deployment.index)

    def rollback_to(self, previous: Deployment, osname: str) -> None:
        rpmostree.rollback()


def select(choice: str, sysroot: Sysroot) -> OstreeBackend | RpmOstreeBackend:
    """The backend for ``choice`` (auto, ostree, rpm-ostree) on ``sysroot``."""
    live = sysroot.path.resolve() == Path("/") and Path("/run/ostree-booted").exists()
    if choice == "rpm-ostree" or (choice == "auto" and live and shutil.which("rpm-ostree")
                                  and rpmostree.owns_system()):
        return RpmOstreeBackend(sysroot)
    return OstreeBackend(sysroot, staged=live)
