"""Make a read-only ``/boot`` writable only inside our own mount namespace, only while writing grubenv.

Mirrors greenboot's ``greenboot-boot-remount``: if the mount holding the grubenv is read-only, remount
it read-write in a private mount namespace (systemd's ``PrivateMounts=yes`` in our units; when run by
hand we ``unshare(CLONE_NEWNS)`` ourselves), write, and remount read-only. The rest of the system never
sees ``/boot`` writable. Under ``--root`` nothing is ever remounted.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from greenboot.errors import UserError
from greenboot.layout import Layout

CLONE_NEWNS = 0x00020000


class BootMountError(UserError):
    """/boot could not be made writable for the grubenv update."""


@dataclass(frozen=True)
class RemountPlan:
    """What to do before writing: which mount point, whether it is read-only, whether to unshare first."""

    mountpoint: str
    read_only: bool
    unshare: bool

    @property
    def needed(self) -> bool:
        return self.read_only


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def plan(mountinfo: str, target: str, own_namespace: bool) -> Optional[RemountPlan]:
    """From ``/proc/self/mountinfo`` text, the mount that holds ``target`` and what writing it needs."""
    best: Optional[tuple] = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 6:
            continue
        mountpoint = _unescape(fields[4])
        options = fields[5].split(",")
        prefix = mountpoint.rstrip("/") + "/"
        if (target == mountpoint or target.startswith(prefix) or mountpoint == "/") and (
            best is None or len(mountpoint) >= len(best[0])
        ):
            best = (mountpoint, "ro" in options)
    if best is None:
        return None
    return RemountPlan(best[0], best[1], unshare=best[1] and not own_namespace)


def _own_namespace() -> bool:
    try:
        return os.readlink("/proc/1/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False


def _unshare_mounts() -> None:
    import ctypes

    from greenboot.external import run

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise BootMountError(f"cannot create a private mount namespace to write /boot: {os.strerror(err)}")
    # Keep our remount from propagating back to the host's mounts.
    run(["mount", "--make-rslave", "/"])


@contextlib.contextmanager
def writable(layout: Layout, target: Path) -> Iterator[None]:
    """Within the block ``target`` can be written; a read-only mount is remounted privately."""
    if not layout.live:
        yield
        return
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        yield
        return
    step = plan(mountinfo, str(target), _own_namespace())
    if step is None or not step.needed:
        yield
        return
    from greenboot.external import run

    if step.unshare:
        _unshare_mounts()
    run(["mount", "-o", "remount,rw", step.mountpoint])
    try:
        yield
    finally:
        run(["mount", "-o", "remount,ro", step.mountpoint], check=False)
