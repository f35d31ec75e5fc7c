"""Protect data across an update: snapshot configured paths, restore them after a rollback.

A snapshot is keyed by the deployment it belongs to (``<checksum>.<serial>``, the deployment that was
running when the update started), copied with ``cp --reflink=auto -a`` (free on btrfs/XFS, a plain copy
elsewhere) into a temp directory that is renamed into place only when complete. Taking a snapshot
first checks that the files fit with ``min_free_bytes`` to spare and otherwise refuses, saying how
much space is needed. Restoring swaps each path with rename so a crash leaves either the old or the
restored content, and is resumable.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from greenboot import atomic
from greenboot.errors import UserError
from greenboot.external import ToolError, run

MANIFEST = "manifest.json"


class SnapshotError(UserError):
    """A snapshot could not be taken or restored."""


class NotEnoughSpace(SnapshotError):
    """The snapshot would not fit."""

    def __init__(self, needed: int, free: int, where: Path) -> None:
        self.needed = needed
        self.free = free
        super().__init__(f"not enough free space in {where} to protect data: need {_mib(needed)}, "
                         f"have {_mib(free)}; free some space or lower min_free_bytes")


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def tree_size(path: Path) -> int:
    """Bytes of regular files under ``path`` (what a non-reflink copy needs), without following links."""
    if not path.exists() and not path.is_symlink():
        return 0
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


@dataclass(frozen=True)
class SnapshotStore:
    """Snapshots under ``<root>/<id>/``: ``manifest.json`` plus ``data/<n>`` for the n-th path."""

    root: Path

    def path(self, snap_id: str) -> Path:
        return self.root / snap_id

    def exists(self, snap_id: str) -> bool:
        return (self.path(snap_id) / MANIFEST).is_file()

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file())

    def take(self, snap_id: str, paths: Sequence[Path], *, min_free_bytes: int) -> Path:
        """Snapshot ``paths`` as ``snap_id`` (no-op when it already exists)."""
        final = self.path(snap_id)
        if self.exists(snap_id):
            return final
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        needed = sum(tree_size(Path(p)) for p in paths) + min_free_bytes
        st = os.statvfs(self.root)
        free = st.f_bavail * st.f_frsize
        if needed > free:
            raise NotEnoughSpace(needed, free, self.root)
        with atomic.replacing_dir(final) as tmp:
            entries = []
            (tmp / "data").mkdir()
            for n, src in enumerate(paths):
                src = Path(src)
                present = src.exists() or src.is_symlink()
                if present:
                    _cp(src, tmp / "data" / str(n))
                entries.append({"path": str(src), "present": present})
            atomic.write_json(tmp / MANIFEST, {"id": snap_id, "paths": entries})
        return final

    def restore(self, snap_id: str) -> list[str]:
        """Put every path of snapshot ``snap_id`` back as it was; returns the paths restored."""
        snap = self.path(snap_id)
        try:
            manifest = json.loads((snap / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SnapshotError(f"snapshot {snap_id} in {self.root} is missing or damaged; cannot restore") from err
        restored = []
        for n, entry in enumerate(manifest["paths"]):
            dest = Path(entry["path"])
            staging = dest.with_name(f".{dest.name}.fieldshift-restore")
            old = dest.with_name(f".{dest.name}.fieldshift-old")
            _remove(staging)
            if entry["present"]:
                dest.parent.mkdir(parents=True, exist_ok=True)
                _cp(snap / "data" / str(n), staging)
            if dest.exists() or dest.is_symlink():
                _remove(old)
                os.rename(dest, old)
            if entry["present"]:
                os.rename(staging, dest)
            atomic.fsync_dir(dest.parent)
            _remove(old)
            restored.append(str(dest))
        return restored

    def drop_except(self, keep: Sequence[str]) -> list[str]:
        """Delete snapshots not in ``keep`` (and leftovers of interrupted ones)."""
        dropped: list[str] = []
        if not self.root.is_dir():
            return dropped
        for p in self.root.iterdir():
            if p.name not in keep:
                shutil.rmtree(p, ignore_errors=True)
                dropped.append(p.name)
        return dropped


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _cp(src: Path, dest: Path) -> None:
    """``cp --reflink=auto -a`` (keeps owners, modes, times, xattrs, links; shares extents if it can)."""
    try:
        run(["cp", "--reflink=auto", "-a", "--", str(src), str(dest)])
    except ToolError as err:
        if "No space left" in err.stderr:
            raise SnapshotError(f"ran out of space copying {src}; free some space") from err
        raise SnapshotError(f"could not copy {src}: {err.message}") from err
