"""Content-addressed cache of installed package trees, keyed by the resolved package set's digest.

A tree is built in a temp directory and renamed into place only when the install succeeded, so the
cache never holds a half-installed tree. Builds get a private copy (``cp -a --reflink=auto``: instant
on btrfs/xfs, a plain copy elsewhere) because stages rewrite files in place. Old entries are pruned
by last use.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from greenboot.external import run


def write_entry(path: Path, obj: Any) -> None:
    """Write a small JSON cache entry: rename-atomic (never half-written), not fsynced (losing one is harmless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True))
    os.replace(tmp, path)


def sweep(cache_dir: Path, max_age: float = 24 * 3600) -> None:
    """Remove work trees and dnf workspaces that a killed build left behind (older than ``max_age`` s).

    A build removes its own on success and on every error; only SIGKILL or a power cut leaves them.
    """
    now = time.time()
    for pattern in ("build-*", "dnf-*", "trees/.*"):
        for stale in cache_dir.glob(pattern):
            try:
                if now - stale.lstat().st_mtime > max_age:
                    shutil.rmtree(stale, ignore_errors=True)
            except FileNotFoundError:
                pass


class TreeCache:
    """Installed trees under ``root/trees/<digest>``."""

    def __init__(self, root: Path, keep: int = 4) -> None:
        self.root = root
        self.keep = keep

    def path(self, key: str) -> Path:
        return self.root / "trees" / key

    def get(self, key: str) -> Path | None:
        """The cached tree for ``key`` (its use time refreshed), or ``None``."""
        path = self.path(key)
        if (path / ".complete").exists():
            os.utime(path / ".complete")
            return path
        return None

    def populate(self, key: str, fill: Callable[[Path], None]) -> Path:
        """Build the tree for ``key`` with ``fill(tmpdir)`` and publish it atomically."""
        trees = self.root / "trees"
        trees.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=trees))
        dest = self.path(key)
        try:
            fill(tmp / "tree")
            (tmp / "tree" / ".complete").touch()
            if dest.exists() and not (dest / ".complete").exists():
                shutil.rmtree(dest)  # debris of an interrupted run (a complete entry is never replaced)
            try:
                os.rename(tmp / "tree", dest)
            except OSError:
                if not (dest / ".complete").exists():
                    raise
                # another build sharing this cache published the same tree first: use theirs
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.prune()
        return dest

    def copy_to(self, key: str, dest: Path) -> None:
        """A private, writable copy of the cached tree at ``dest`` (which must not exist)."""
        src = self.get(key)
        if src is None:
            raise KeyError(key)
        run(["cp", "-a", "--reflink=auto", str(src), str(dest)])
        (dest / ".complete").unlink()

    def prune(self) -> None:
        """Drop all but the ``keep`` most recently used trees."""
        trees = self.root / "trees"
        if not trees.is_dir():
            return
        done = sorted((p for p in trees.iterdir() if (p / ".complete").exists()),
                      key=lambda p: (p / ".complete").stat().st_mtime, reverse=True)
        for old in done[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
