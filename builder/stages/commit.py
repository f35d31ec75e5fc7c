"""Commit a prepared tree into an archive ostree repository with rpm-ostree's commit metadata.

Metadata keys: ``version`` (blueprint version), ``rpmostree.inputhash`` (hash of every input; a build
whose inputhash equals the ref's current commit is a no-op), ``rpmostree.rpmdb.pkglist`` (``a(sssss)``
name, epoch, version, release, arch, as rpm-ostree writes it), ``fieldshift.blueprint-digest``,
``fieldshift.kargs``, ``ostree.bootable`` and ``ostree.linux`` (the kernel version).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import ostree
from builder.backends import PackageSet


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


def apply(tree: Path, options: CommitOptions, pkgset: PackageSet) -> str:
    """Commit ``tree``; returns the new commit checksum (the ref moves only when every object is stored)."""
    ostree.ensure_repo(options.repo)
    return ostree.commit(
        options.repo, tree, ref=options.ref, subject=options.subject, metadata=metadata(options, pkgset),
        timestamp=options.timestamp, parent=options.parent, consume=options.consume,
    )
