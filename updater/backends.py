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

from updater import rpmostree
from updater.ostree import Deployment, Sysroot


@dataclass
class OstreeBackend:
    sysroot: Sysroot
    staged: bool
    name: str = "ostree"

    def stage(self, osname: str, checksum: str) -> None:
        self.sysroot.deploy(osname, checksum, stage=self.staged)

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
