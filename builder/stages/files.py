"""Files and directories from ``[[customizations.directories]]`` / ``[[customizations.files]]``.

Owners are resolved against the tree's own account files (so users created by the users stage
work), modes default to 0755 for directories and 0644 for files, like osbuild's ``fsnode``
customizations (``osbuild/images`` ``pkg/customizations/fsnode``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from builder.blueprint.models import Directory, File
from builder.stages import StageError, inside, parse_mode
from builder.stages.accounts import Accounts


@dataclass(frozen=True)
class FilesOptions:
    """Directories are created before files; ``base_dir`` resolves a file's ``uri`` (blueprint dir)."""

    directories: tuple[Directory, ...] = ()
    files: tuple[File, ...] = ()
    base_dir: Path = Path(".")


def _ids(acc: Accounts, user: str | int | None, group: str | int | None, where: str) -> tuple[int, int]:
    uid = 0 if user is None else acc.uid_of(user)
    if uid is None:
        raise StageError(f'{where}.user: user "{user}" does not exist in the image')
    gid = 0 if group is None else acc.gid_of(group)
    if gid is None:
        raise StageError(f'{where}.group: group "{group}" does not exist in the image')
    return uid, gid


def _mkdirs(root: Path, path: Path, where: str) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise StageError(f"{where}: /{path.relative_to(root)} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)


def apply(root: Path, options: FilesOptions) -> None:
    """Create the directories and files with their owners and modes."""
    if not options.directories and not options.files:
        return
    acc = Accounts.load(root)
    for i, d in enumerate(options.directories):
        where = f"customizations.directories[{i}]"
        target = inside(root, d.path, f"{where}.path")
        if not target.parent.exists() and not d.ensure_parents:
            raise StageError(f'{where}: parent of "{d.path}" does not exist; set ensure_parents = true')
        _mkdirs(root, target, where)
        uid, gid = _ids(acc, d.user, d.group, where)
        os.chmod(target, parse_mode(d.mode, 0o755, f"{where}.mode"))
        os.lchown(target, uid, gid)
    for i, f in enumerate(options.files):
        where = f"customizations.files[{i}]"
        target = inside(root, f.path, f"{where}.path")
        if f.data is not None:
            data = f.data.encode()
        elif f.uri:
            src = (options.base_dir / f.uri.removeprefix("file://")).resolve()
            if not src.is_file():
                raise StageError(f'{where}.uri: "{f.uri}" is not a readable file (relative to {options.base_dir})')
            data = src.read_bytes()
        else:
            data = b""
        if target.is_dir() and not target.is_symlink():
            raise StageError(f'{where}.path: "{f.path}" is a directory in the image')
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_bytes(data)
        uid, gid = _ids(acc, f.user, f.group, where)
        os.chmod(target, parse_mode(f.mode, 0o644, f"{where}.mode"))
        os.lchown(target, uid, gid)
