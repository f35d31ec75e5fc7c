"""Compose stages: each module changes a root tree in one way, driven by a frozen options dataclass.

Stages write files directly into the tree (no chroot, no tools from the target); the only external
programs they call are host tools that take a ``--root`` (``systemctl``, ``systemd-sysusers``).
Shared rules live here: joining a blueprint path onto the tree without escaping it, and the error
type every stage raises.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from greenboot.errors import UserError


class StageError(UserError):
    """A customization cannot be applied to the tree (names the blueprint key)."""


def inside(root: Path, path: str, where: str) -> Path:
    """``path`` (absolute, inside the image) joined onto ``root``; refuses ``..`` and relative paths."""
    pure = PurePosixPath(path)
    if not pure.is_absolute() or ".." in pure.parts:
        raise StageError(f'{where}: path "{path}" must be absolute and must not contain ".."')
    return root.joinpath(*pure.parts[1:])


def parse_mode(mode: str | int | None, default: int, where: str) -> int:
    """An octal mode given as ``"0644"``/``"644"`` (or an int) in a blueprint."""
    if mode is None or mode == "":
        return default
    if isinstance(mode, int):
        return mode
    try:
        value = int(str(mode), 8)
    except ValueError:
        raise StageError(f'{where}: mode "{mode}" is not an octal number such as "0644"') from None
    if value > 0o7777:
        raise StageError(f'{where}: mode "{mode}" is out of range')
    return value


def chown(path: Path, uid: int, gid: int) -> None:
    """Set owner ids without following symlinks (no-op when not permitted and the ids already match)."""
    os.lchown(path, uid, gid)
