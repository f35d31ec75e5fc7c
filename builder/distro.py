"""Distro definitions: package backend, ostree ref, base packages and grubenv tool of each distro.

Each distro is one TOML file in ``builder/distros/`` (data, like osbuild's distro definitions in
``osbuild/images`` ``data/distrodefs``); :func:`get` reads one for an architecture.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import tomllib

from greenboot.errors import UserError

DISTRO_DIR = Path(__file__).resolve().parent / "distros"
ARCHITECTURES = ("x86_64", "aarch64")
BACKENDS = ("dnf", "apt")


class DistroError(UserError):
    """An unknown distro or architecture, or a malformed distro definition."""


@dataclass(frozen=True)
class Distro:
    """One distro for one architecture, with every value already formatted for that architecture.

    ``base_packages`` are installed into every edge image (kernel included); ``boot_packages`` are
    added for image types that carry a bootloader (disk images, installers).
    """

    name: str
    family: str
    backend: str
    releasever: str
    architecture: str
    ostree_ref: str
    base_packages: tuple[str, ...]
    boot_packages: tuple[str, ...]
    kernel_package: str
    grubenv_path: str
    grub_editenv: str
    suite: Optional[str] = None


def names() -> list[str]:
    """Every distro that has a definition, sorted."""
    return sorted(p.stem for p in DISTRO_DIR.glob("*.toml"))


def get(name: str, arch: str = "x86_64") -> Distro:
    """The definition of distro ``name`` for ``arch``; :class:`DistroError` if there is none."""
    known = names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise DistroError(f'unknown distro "{name}"{hint} (known: {", ".join(known)})')
    if arch not in ARCHITECTURES:
        raise DistroError(f'unknown architecture "{arch}" (known: {", ".join(ARCHITECTURES)})')
    path = DISTRO_DIR / f"{name}.toml"
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return _build(data, arch, path)


def _build(data: dict[str, Any], arch: str, path: Path) -> Distro:
    try:
        per_arch = data.get("arch", {}).get(arch, {})
        if data["backend"] not in BACKENDS:
            raise DistroError(f"{path}: backend must be one of {', '.join(BACKENDS)}")
        return Distro(
            name=data["name"],
            family=data["family"],
            backend=data["backend"],
            releasever=str(data["releasever"]),
            architecture=arch,
            ostree_ref=data["ostree_ref"].format(arch=arch),
            base_packages=tuple(data.get("base_packages", [])) + tuple(per_arch.get("packages", [])),
            boot_packages=tuple(per_arch.get("boot_packages", [])),
            kernel_package=per_arch.get("kernel_package", data.get("kernel_package", "kernel")),
            grubenv_path=data["grubenv_path"],
            grub_editenv=data["grub_editenv"],
            suite=data.get("suite"),
        )
    except KeyError as err:
        raise DistroError(f"{path}: missing key {err.args[0]}") from None
