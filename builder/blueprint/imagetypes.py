"""Image types and which blueprint customizations each one takes.

Mirrors osbuild's per-type checks (``osbuild/images`` ``pkg/distro/rhel/rhel9/edge.go`` and the
``checkOptions`` of ``pkg/distro/rhel/imagetype.go``) but never drops a customization silently:
a section the chosen type does not use is an error naming it.

``raw`` and ``qcow2`` are fieldshift's own bootable disks: unlike osbuild's edge-raw-image (which
deploys an existing commit) they build the commit from the same blueprint, so they take everything
edge-commit takes plus what only a disk can use (kernel arguments, filesystems, Ignition).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional

from builder.blueprint.errors import BlueprintError
from builder.blueprint.models import Blueprint
from builder.blueprint.parse import Converter

DEFAULT = "edge-commit"

# Customizations that make sense in an ostree commit (the tree every device shares).
_COMMIT = frozenset(
    {
        "hostname", "kernel", "sshkey", "user", "group", "timezone", "locale", "firewall", "services",
        "directories", "files", "repositories", "fips", "rpm", "rhsm", "cacerts", "containers-storage", "dnf",
    }
)  # fmt: skip
_RAW = frozenset({"ignition", "kernel", "sshkey", "user", "group", "fips", "filesystem"})


@dataclass(frozen=True)
class ImageType:
    """One image type: what it produces and which customizations (TOML keys) it accepts.

    ``commit`` types build an ostree commit from the blueprint's packages; ``bootable`` types
    carry a bootloader (so the distro's boot packages are added); ``kernel_append`` says whether
    ``customizations.kernel.append`` can take effect (ostree commits carry no kernel arguments).
    """

    name: str
    accepts: frozenset[str]
    commit: bool
    bootable: bool
    kernel_append: bool
    containers: bool
    aliases: tuple[str, ...] = ()
    required: Optional[str] = None


TYPES: tuple[ImageType, ...] = (
    ImageType("edge-commit", _COMMIT, commit=True, bootable=False, kernel_append=False, containers=True,
              aliases=("rhel-edge-commit", "iot-commit")),
    ImageType("edge-container", _COMMIT, commit=True, bootable=False, kernel_append=False, containers=True,
              aliases=("rhel-edge-container", "iot-container")),
    ImageType("edge-raw-image", _RAW, commit=False, bootable=True, kernel_append=True, containers=False,
              aliases=("rhel-edge-raw-image", "iot-raw-image")),
    ImageType("edge-installer",
              frozenset({"sshkey", "user", "group", "fips", "installer", "timezone", "locale", "iso"}),
              commit=False, bootable=True, kernel_append=False, containers=False,
              aliases=("rhel-edge-installer", "iot-installer")),
    ImageType("edge-simplified-installer",
              frozenset({"installation_device", "fdo", "ignition", "kernel", "sshkey", "user", "group", "fips",
                         "filesystem", "iso"}),
              commit=False, bootable=True, kernel_append=True, containers=False,
              aliases=("rhel-edge-simplified-installer", "iot-simplified-installer"),
              required="installation_device"),
    ImageType("raw", _COMMIT | _RAW, commit=True, bootable=True, kernel_append=True, containers=True),
    ImageType("qcow2", _COMMIT | _RAW, commit=True, bootable=True, kernel_append=True, containers=True),
)  # fmt: skip


def names() -> list[str]:
    """Canonical names of every image type."""
    return [t.name for t in TYPES]


def get(name: str) -> ImageType:
    """The image type called ``name`` (or one of its osbuild aliases)."""
    for kind in TYPES:
        if name == kind.name or name in kind.aliases:
            return kind
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    raise BlueprintError(f'unknown image type "{name}"{hint} (known: {", ".join(names())})')


def check(kind: ImageType, blueprint: Blueprint, conv: Converter) -> None:
    """Refuse customizations ``kind`` does not take, and check what it requires."""
    c = blueprint.customizations
    for section in sorted(c.present):
        if section not in kind.accepts:
            taken = ", ".join(sorted(kind.accepts))
            raise conv.error(
                f"customizations.{section}",
                f'is not supported by image type "{kind.name}" (it takes: {taken})',
            )
    if c.kernel is not None and c.kernel.append and not kind.kernel_append:
        raise conv.error(
            "customizations.kernel.append",
            f'kernel arguments are not supported by image type "{kind.name}" (an ostree commit carries none); '
            "set them when building a disk image (raw, qcow2, edge-raw-image)",
        )
    if blueprint.containers and not kind.containers:
        raise conv.error("containers", f'embedding containers is not supported by image type "{kind.name}"')
    if kind.required == "installation_device" and not c.installation_device:
        raise conv.error(
            "customizations.installation_device", f'is required by image type "{kind.name}" (e.g. "/dev/vda")'
        )
