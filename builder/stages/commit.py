"""Commit a prepared tree into an archive ostree repository with rpm-ostree's commit metadata.

Metadata keys: ``version`` (blueprint version), ``rpmostree.inputhash`` (hash of every input; a build
whose inputhash equals the ref's current commit is a no-op), ``rpmostree.rpmdb.pkglist`` (``a(sssss)``
name, epoch, version, release, arch, as rpm-ostree writes it), ``fieldshift.blueprint-digest``,
``fieldshift.kargs``, ``ostree.bootable`` and ``ostree.linux`` (the kernel version).

Incremental commits: ostree re-reads and re-compresses every file of a tree it commits, even when
the objects exist. When the installed tree this build started from (``base_tree``, the tree cache
entry) is given, its ``/usr`` is committed once per repository as an orphan *base* commit; each build
then drops the files of ``/usr`` that no stage touched (same type, size, mtime, mode and owner as in
the base tree) and commits the rest laid over the base (``--tree=ref=BASE --tree=dir=TREE``). Paths
that a stage removed or turned into another type are left out of the base (``--skip-list``), so the
result is the same tree a full commit gives (tested).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import ostree
from builder.backends import PackageSet
from builder.cache import write_entry


@dataclass(frozen=True)
class CommitOptions:
    """Where and what to commit; ``timestamp`` is SOURCE_DATE_EPOCH-style (seconds)."""

    repo: Path
    ref: str
    subject: str
    version: str
    inputhash: str
    blueprint_digest: str
    kernel_version: str
    timestamp: int
    parent: str | None = None
    kargs: tuple[str, ...] = ()
    consume: bool = False
    # The installed tree the build started from, and where base commits are recorded (see above).
    base_tree: Path | None = None
    base_records: Path | None = None
    pending_base: PendingBase | None = None


def metadata(options: CommitOptions, pkgset: PackageSet) -> dict[str, Any]:
    """The commit metadata dictionary (values as :func:`builder.ostree.gvariant` takes them)."""
    pkglist = [(p.name, str(p.epoch), p.version, p.release, p.arch) for p in pkgset.packages]
    return {
        "version": options.version,
        "rpmostree.inputhash": options.inputhash,
        "rpmostree.rpmdb.pkglist": pkglist,
        "fieldshift.blueprint-digest": options.blueprint_digest,
        "fieldshift.kargs": list(options.kargs),
        "ostree.bootable": True,
        "ostree.linux": options.kernel_version,
    }


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_mode, a.st_uid, a.st_gid, a.st_size, a.st_mtime_ns) == (b.st_mode, b.st_uid, b.st_gid, b.st_size,
                                                                         b.st_mtime_ns)


def _kind(mode: int) -> str:
    return "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode) else "f" if stat.S_ISREG(mode) else "o"


def split_unchanged(base_tree: Path, tree: Path) -> tuple[list[str], int]:
    """Remove from ``tree/usr`` the files identical to ``base_tree/usr``; returns (paths to skip in the base,
    number of files removed). Skipped: ``base_tree`` entries outside ``/usr`` and ``/usr`` paths that
    ``tree`` no longer has or has as another type (those must not come back through the base).
    """
    skip = sorted(f"/{p.name}" for p in base_tree.iterdir() if p.name != "usr")
    removed = 0
    for dirpath, dirnames, filenames in os.walk(base_tree / "usr"):
        base_dir = Path(dirpath)
        rel = base_dir.relative_to(base_tree)
        keep_dirs = []
        for name in sorted(dirnames + filenames):
            b = base_dir / name
            w = tree / rel / name
            bst = b.lstat()
            try:
                wst = w.lstat()
            except FileNotFoundError:
                skip.append(f"/{rel / name}")
                continue
            if _kind(bst.st_mode) != _kind(wst.st_mode) or _kind(bst.st_mode) == "o":
                skip.append(f"/{rel / name}")
                continue
            if stat.S_ISDIR(bst.st_mode):
                keep_dirs.append(name)
            elif _same(bst, wst) and (not stat.S_ISLNK(bst.st_mode) or os.readlink(b) == os.readlink(w)):
                w.unlink()
                removed += 1
        dirnames[:] = [d for d in dirnames if d in keep_dirs]
    return sorted(skip), removed


def _selinux_dir(tree: Path) -> Path | None:
    for sub in ("usr/etc/selinux", "etc/selinux"):
        if (tree / sub / "config").is_file():
            return tree / sub
    return None


def selinux_policy(tree: Path) -> Path | None:
    """``tree`` when it carries an SELinux policy to label with (``selinux/config`` under ``usr/etc`` or
    ``etc``, naming a ``SELINUXTYPE`` whose ``file_contexts`` exists), else ``None`` (no labels).

    ``ostree commit --selinux-policy`` labels by path; ``/usr/etc`` gets its own paths' labels and
    ostree relabels it as ``/etc`` when it deploys (``merge_configuration`` in ostree-sysroot-deploy.c).
    """
    selinux = _selinux_dir(tree)
    if selinux is None:
        return None
    kind = next((line.split("=", 1)[1].strip() for line in (selinux / "config").read_text().splitlines()
                 if line.strip().startswith("SELINUXTYPE=")), "targeted")
    return tree if (selinux / kind / "contexts/files/file_contexts").is_file() else None


def _policy_digest(policy: Path | None) -> str:
    selinux = _selinux_dir(policy) if policy is not None else None
    if selinux is None:
        return ""
    h = hashlib.sha256()
    for path in sorted(selinux.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(selinux)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# /usr paths ostree prep always turns into symlinks: never part of a base.
PREP_RETYPED = ("usr/local", "usr/lib/sysimage/rpm")


def expected_skip(base_tree: Path) -> list[str]:
    """The skip list :func:`split_unchanged` gives when the stages remove nothing from ``/usr``."""
    skip = [f"/{p.name}" for p in base_tree.iterdir() if p.name != "usr"]
    skip += [f"/{p}" for p in PREP_RETYPED if (base_tree / p).is_dir() and not (base_tree / p).is_symlink()]
    return sorted(skip)


@dataclass
class PendingBase:
    """A base commit of a cached tree, known from a record or being written in the background.

    Started before the stages run (it only reads the cache entry), so compressing ``/usr`` overlaps
    with customization; :func:`apply` uses it when the real skip list and policy turn out as expected.
    """

    repo: Path
    base_tree: Path
    record: Path
    skip: list[str]
    policy_digest: str
    checksum: str | None = None
    job: ostree.BackgroundCommit | None = None

    def result(self) -> str | None:
        """The base commit, or ``None`` when the background commit failed (the caller makes one)."""
        if self.checksum is None and self.job is not None:
            self.checksum = self.job.wait()
            self.job = None
            if self.checksum is not None:
                write_entry(self.record, {"commit": self.checksum})
        return self.checksum

    def cancel(self) -> None:
        """Stop an unfinished background commit (its objects stay as unreferenced leftovers)."""
        if self.job is not None:
            self.job.cancel()
            self.job = None


def _record_path(records: Path, repo: Path, base_tree: Path, skip: list[str], policy_digest: str) -> Path:
    key = hashlib.sha256(json.dumps([str(repo.resolve()), skip, policy_digest]).encode()).hexdigest()
    return records / f"{base_tree.name}-{key[:16]}.json"


def start_base(repo: Path, base_tree: Path, records: Path) -> PendingBase:
    """Find or start (in the background) the base commit for ``base_tree`` in ``repo``."""
    ostree.ensure_repo(repo)
    skip = expected_skip(base_tree)
    policy = selinux_policy(base_tree)
    digest = _policy_digest(policy)
    record = _record_path(records, repo, base_tree, skip, digest)
    pending = PendingBase(repo, base_tree, record, skip, digest)
    if record.exists():
        checksum = str(json.loads(record.read_text())["commit"])
        if ostree.has_commit(repo, checksum):
            pending.checksum = checksum
            return pending
    pending.job = ostree.start_commit_base(repo, base_tree, skip, policy)
    return pending


def _base_commit(options: CommitOptions, skip: list[str], policy: Path | None) -> str:
    """The base commit for the real ``skip`` and policy: the pending one when it matches, else made now."""
    assert options.base_tree is not None and options.base_records is not None
    digest = _policy_digest(policy)
    pending = options.pending_base
    if pending is not None and pending.skip == skip and pending.policy_digest == digest:
        checksum = pending.result()
        if checksum is not None:
            return checksum
    if pending is not None:
        pending.cancel()
    record = _record_path(options.base_records, options.repo, options.base_tree, skip, digest)
    if record.exists():
        checksum = str(json.loads(record.read_text())["commit"])
        if ostree.has_commit(options.repo, checksum):
            return checksum
    checksum = ostree.commit_base(options.repo, options.base_tree, skip, policy)
    write_entry(record, {"commit": checksum})
    return checksum


def apply(tree: Path, options: CommitOptions, pkgset: PackageSet) -> str:
    """Commit ``tree``; returns the new commit checksum (the ref moves only when every object is stored).

    With ``options.base_tree`` the unchanged part of ``/usr`` is removed from ``tree`` first.
    """
    ostree.ensure_repo(options.repo)
    policy = selinux_policy(tree)
    base = None
    if options.base_tree is not None and options.base_records is not None and (options.base_tree / "usr").is_dir():
        skip, _removed = split_unchanged(options.base_tree, tree)
        base = _base_commit(options, skip, policy)
    layers: list[str] = []
    if base is not None and policy is not None:
        # ostree relabels (so re-reads) every file of a --tree=ref when a policy is given: label the
        # changed part alone, then merge the two labeled commits without a policy.
        layers.append(ostree.commit_base(options.repo, tree, (), policy))
        policy = None
    return ostree.commit(
        options.repo, tree, ref=options.ref, subject=options.subject, metadata=metadata(options, pkgset),
        timestamp=options.timestamp, parent=options.parent, consume=options.consume, base=base,
        selinux_policy=policy, layers=layers,
    )
