"""Package backends: resolve a blueprint's package request to an exact package set, install it into a tree.

A backend has two operations, kept apart so the builder can depsolve first (and fail early with an error
naming the blueprint entry), then cache and skip installation when the resolved set was seen before:

- ``resolve(request) -> PackageSet``: exact packages (name, epoch, version, release, arch, checksum),
  frozen, sorted and hashable; its ``digest`` keys the tree cache and feeds ``rpmostree.inputhash``.
- ``install(pkgset, root, progress)``: put exactly those packages into ``root`` (an empty directory).

``get(name)`` returns the backend a distro definition names (``"dnf"`` or ``"apt"``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from greenboot.errors import UserError

Progress = Callable[[str], None]


def no_progress(_line: str) -> None:
    """A progress sink that drops every line."""


class PackageError(UserError):
    """A package request cannot be satisfied (missing package, conflict, unusable repository)."""


class MissingPackageError(PackageError):
    """No repository has a package the blueprint asked for."""


class DepsolveError(PackageError):
    """The requested packages cannot be installed together (conflicts, missing dependencies)."""


class RepositoryError(PackageError):
    """A repository is unreachable or has no usable metadata."""


@dataclass(frozen=True, order=True)
class PackageSpec:
    """One requested package: ``spec`` as the backend understands it, ``origin`` names the blueprint entry."""

    spec: str
    origin: str = ""

    @property
    def label(self) -> str:
        return self.origin or f'"{self.spec}"'


@dataclass(frozen=True)
class PackageRequest:
    """What to resolve: specs plus the repositories and distro parameters to resolve them against.

    ``repo_files`` are the backend's repository definitions (dnf ``.repo`` files; for apt, sources files).
    ``cache_dir`` keeps downloaded metadata and packages between builds.
    """

    specs: tuple[PackageSpec, ...]
    repo_files: tuple[Path, ...]
    distro: str
    releasever: str
    arch: str
    cache_dir: Path
    excludes: tuple[str, ...] = ()
    # Where the target's own rpm expects its database (before ostree prep moves it to /usr/share/rpm).
    dbpath: str = "/var/lib/rpm"
    # The caller will probably install the result next: a backend may keep resources warm for it
    # (and then offers ``close()``, which the caller must call).
    prefetch: bool = field(default=False, compare=False)


@dataclass(frozen=True, order=True)
class ResolvedPackage:
    """One exact package of a resolved set."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str
    repo_id: str = field(default="", compare=False)
    checksum: str = ""  # "sha256:<hex>" of the package file, as the repository metadata states it
    location: str = field(default="", compare=False)

    @property
    def evr(self) -> str:
        return f"{self.epoch}:{self.version}-{self.release}" if self.epoch else f"{self.version}-{self.release}"

    @property
    def nevra(self) -> str:
        """``name-epoch:version-release.arch`` (epoch always present, as rpm-ostree lists packages)."""
        return f"{self.name}-{self.epoch}:{self.version}-{self.release}.{self.arch}"


@dataclass(frozen=True)
class PackageSet:
    """An exact, sorted package set plus the request it answers (``install`` needs the repositories)."""

    packages: tuple[ResolvedPackage, ...]
    request: PackageRequest = field(compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "packages", tuple(sorted(self.packages)))

    @property
    def digest(self) -> str:
        """sha256 over every package's NEVRA and checksum: equal digests mean an identical install."""
        h = hashlib.sha256()
        h.update(f"arch={self.request.arch} dbpath={self.request.dbpath}\n".encode())
        for p in self.packages:
            h.update(f"{p.nevra} {p.checksum}\n".encode())
        return h.hexdigest()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.packages)

    def find(self, name: str) -> ResolvedPackage | None:
        for p in self.packages:
            if p.name == name:
                return p
        return None


class Backend(Protocol):
    """What the compose pipeline needs from a package manager."""

    def resolve(self, request: PackageRequest) -> PackageSet: ...

    def install(self, pkgset: PackageSet, root: Path, progress: Progress = no_progress) -> None: ...


def get(name: str) -> Backend:
    """The backend a distro definition names."""
    if name == "dnf":
        from builder.backends.dnf import DnfBackend

        return DnfBackend()
    if name == "apt":
        import importlib

        # builder/backends/apt.py is written against this interface by the images helper.
        apt = importlib.import_module("builder.backends.apt")
        backend: Backend = apt.AptBackend()
        return backend
    raise PackageError(f'unknown package backend "{name}"; expected "dnf" or "apt"')
