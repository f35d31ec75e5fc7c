"""``fieldshift diff``: packages added, removed, upgraded and downgraded between two commits.

Reads the ``rpmostree.rpmdb.pkglist`` metadata of both commits, as ``rpm-ostree db diff`` does, and
orders versions with rpm's own comparison (``rpmvercmp``, re-implemented in :func:`vercmp`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builder import ostree
from greenboot.errors import UserError


class DiffError(UserError):
    """A commit to compare is missing or carries no package list."""


@dataclass(frozen=True, order=True)
class Pkg:
    """One package of a commit's package list."""

    name: str
    epoch: str
    version: str
    release: str
    arch: str

    @property
    def evr(self) -> str:
        e = f"{self.epoch}:" if self.epoch not in ("", "0") else ""
        return f"{e}{self.version}-{self.release}"

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.evr}.{self.arch}"


@dataclass(frozen=True)
class Change:
    """A package present in both commits with different versions."""

    name: str
    arch: str
    old: str
    new: str


@dataclass(frozen=True)
class PackageDiff:
    """The difference of two package lists."""

    from_commit: str
    to_commit: str
    added: tuple[Pkg, ...]
    removed: tuple[Pkg, ...]
    upgraded: tuple[Change, ...]
    downgraded: tuple[Change, ...]

    def to_json(self) -> dict:
        return {
            "from": self.from_commit,
            "to": self.to_commit,
            "added": [p.nevra for p in self.added],
            "removed": [p.nevra for p in self.removed],
            "upgraded": [{"name": c.name, "arch": c.arch, "from": c.old, "to": c.new} for c in self.upgraded],
            "downgraded": [{"name": c.name, "arch": c.arch, "from": c.old, "to": c.new} for c in self.downgraded],
        }

    def lines(self) -> list[str]:
        out = [f"ostree diff commit from: {self.from_commit}", f"ostree diff commit to:   {self.to_commit}"]
        if self.upgraded:
            out.append("Upgraded:")
            out += [f"  {c.name} {c.old} -> {c.new}" for c in self.upgraded]
        if self.downgraded:
            out.append("Downgraded:")
            out += [f"  {c.name} {c.old} -> {c.new}" for c in self.downgraded]
        if self.removed:
            out.append("Removed:")
            out += [f"  {p.nevra}" for p in self.removed]
        if self.added:
            out.append("Added:")
            out += [f"  {p.nevra}" for p in self.added]
        if len(out) == 2:
            out.append("No package changes.")
        return out


_SEGMENT = re.compile(r"(\d+|[a-zA-Z]+|~|\^)")


def vercmp(a: str, b: str) -> int:
    """rpm's version segment comparison: -1, 0 or 1 (digits beat letters, ``~`` sorts before all)."""
    if a == b:
        return 0
    sa, sb = _SEGMENT.findall(a), _SEGMENT.findall(b)
    while sa or sb:
        x = sa.pop(0) if sa else None
        y = sb.pop(0) if sb else None
        if x == "~" or y == "~":
            if x != y:
                return -1 if x == "~" else 1
            continue
        if x == "^" or y == "^":
            if x is None:
                return -1
            if y is None:
                return 1
            if x != y:
                return 1 if x == "^" else -1
            continue
        if x is None:
            return -1
        if y is None:
            return 1
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        if x.isdigit():
            cx, cy = int(x), int(y)
            if cx != cy:
                return 1 if cx > cy else -1
        elif x != y:
            return 1 if x > y else -1
    return 0


def evr_compare(a: Pkg, b: Pkg) -> int:
    """Compare epoch, then version, then release."""
    ea, eb = int(a.epoch or 0), int(b.epoch or 0)
    if ea != eb:
        return 1 if ea > eb else -1
    return vercmp(a.version, b.version) or vercmp(a.release, b.release)


def packages(repo: Path, rev: str) -> tuple[str, tuple[Pkg, ...]]:
    """A commit's checksum and package list."""
    checksum = ostree.rev_parse(repo, rev)
    if checksum is None:
        raise DiffError(f'"{rev}" is neither a ref nor a commit in {repo}')
    value = ostree.metadata_value(repo, checksum, "rpmostree.rpmdb.pkglist")
    if not isinstance(value, list):
        raise DiffError(f"commit {checksum[:12]} has no rpmostree.rpmdb.pkglist metadata")
    return checksum, tuple(sorted(Pkg(*map(str, t)) for t in value))


def diff(repo: Path, from_rev: str, to_rev: str) -> PackageDiff:
    """Compare the package lists of two commits."""
    a_id, a = packages(repo, from_rev)
    b_id, b = packages(repo, to_rev)
    old = {(p.name, p.arch): p for p in a}
    new = {(p.name, p.arch): p for p in b}
    upgraded, downgraded = [], []
    for k in sorted(old.keys() & new.keys()):
        c = evr_compare(new[k], old[k])
        if c > 0:
            upgraded.append(Change(k[0], k[1], old[k].evr, new[k].evr))
        elif c < 0:
            downgraded.append(Change(k[0], k[1], old[k].evr, new[k].evr))
    return PackageDiff(
        a_id, b_id,
        added=tuple(new[k] for k in sorted(new.keys() - old.keys())),
        removed=tuple(old[k] for k in sorted(old.keys() - new.keys())),
        upgraded=tuple(upgraded), downgraded=tuple(downgraded),
    )
