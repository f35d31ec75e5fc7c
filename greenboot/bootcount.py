"""The boot-counting contract kept in grubenv: arm before an update, mark green, detect fallback.

Mirrors greenboot's ``greenboot-grub2-set-counter``, ``greenboot-grub2-set-success`` and
``greenboot-rpm-ostree-grub2-check-fallback`` together with GRUB's side
(rhboot/grub2 ``util/grub.d/08_fallback_counting.in``):

- arm: ``boot_counter=N``, ``boot_success=0``
- each boot GRUB decrements ``boot_counter`` while ``boot_success=0``; at 0 (or -1) it boots entry 1
  (the rollback deployment) and stores ``boot_counter=-1``; it then resets ``boot_success=0``
- a green boot: ``boot_success=1`` and ``boot_counter`` unset
- a fallback boot (``boot_counter=-1``): the rollback is made permanent and the counter unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from greenboot.config import MAX_ATTEMPTS_LIMIT
from greenboot.errors import UserError
from greenboot.grubenv import GrubEnv

PathArg = Union[str, "os.PathLike[str]"]


class BootCountError(UserError):
    """The boot counter cannot be armed or read as asked."""


@dataclass(frozen=True)
class BootCount:
    """The counting state read from grubenv (``counter`` None means unset)."""

    counter: Optional[int]
    success: Optional[str]
    raw_counter: Optional[str] = None

    @property
    def armed(self) -> bool:
        """A counter is set: an update is being tried (or GRUB is about to fall back)."""
        return self.counter is not None

    @property
    def fallback(self) -> bool:
        """GRUB gave up on the new deployment and booted the rollback entry."""
        return self.counter == -1

    @property
    def last_attempt(self) -> bool:
        """This boot is the last try: one more red boot and GRUB falls back."""
        return self.counter == 0

    def attempts_left(self) -> Optional[int]:
        """Boots of the current default entry still to come after this one (None when not armed)."""
        return attempts_left(self.counter)


def attempts_left(counter: Union[int, str, None]) -> Optional[int]:
    """Boots still to come after this one for a ``boot_counter`` value (None when unset, 0 if garbled)."""
    if counter is None:
        return None
    try:
        return max(int(counter), 0)
    except ValueError:
        return 0


def read(grubenv_path: PathArg) -> BootCount:
    """The counting variables from ``grubenv_path`` (unset when the file does not exist)."""
    values = GrubEnv(grubenv_path).read()
    raw = values.get("boot_counter")
    counter: Optional[int] = None
    if raw is not None:
        try:
            counter = int(raw)
        except ValueError:
            counter = -1  # GRUB treats an unknown counter as exhausted (see data/grub)
    return BootCount(counter=counter, success=values.get("boot_success"), raw_counter=raw)


def arm(grubenv_path: PathArg, attempts: int) -> None:
    """Give the next default deployment ``attempts`` boots: ``boot_counter=N``, ``boot_success=0``."""
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS_LIMIT:
        raise BootCountError(f"boot attempts must be a whole number from 1 to {MAX_ATTEMPTS_LIMIT}, got {attempts!r}")
    GrubEnv(grubenv_path).update({"boot_counter": str(attempts), "boot_success": "0"})


def mark_green(grubenv_path: PathArg) -> None:
    """Record a healthy boot: ``boot_success=1`` and ``boot_counter`` unset."""
    GrubEnv(grubenv_path).update({"boot_success": "1"}, unset=("boot_counter",))


def clear_counter(grubenv_path: PathArg) -> None:
    """Unset ``boot_counter`` (after a fallback was made permanent)."""
    GrubEnv(grubenv_path).unset("boot_counter")


def disarm(grubenv_path: PathArg) -> None:
    """Cancel a pending trial (e.g. a staged update was withdrawn): same bytes as :func:`clear_counter`."""
    clear_counter(grubenv_path)


def grubenv_for(root: Union[Path, str] = "/", override: str = "") -> Path:
    """The grubenv a root uses (``boot/grub2/grubenv`` or ``boot/grub/grubenv``, or ``override``)."""
    from greenboot.layout import Layout

    return Layout.at(root).grubenv(override or None)
