"""Distro definitions as data: every distro loads, for every architecture, with what the builder needs."""

from __future__ import annotations

import pytest

from builder import distro
from builder.distro import DistroError


def test_the_four_distros_are_defined() -> None:
    assert set(distro.names()) >= {"rhel-9", "centos-stream-9", "fedora-41", "debian-12"}


@pytest.mark.parametrize("name", distro.names())
@pytest.mark.parametrize("arch", distro.ARCHITECTURES)
def test_every_definition_loads_for_every_architecture(name: str, arch: str) -> None:
    d = distro.get(name, arch)
    assert d.name == name and d.architecture == arch
    assert arch in d.ostree_ref and "{" not in d.ostree_ref
    assert d.kernel_package in d.base_packages
    assert d.boot_packages and d.releasever


@pytest.mark.parametrize(
    ("name", "ref", "backend", "grubenv", "editor"),
    [
        ("rhel-9", "rhel/9/x86_64/edge", "dnf", "/boot/grub2/grubenv", "grub2-editenv"),
        ("centos-stream-9", "centos/9/x86_64/edge", "dnf", "/boot/grub2/grubenv", "grub2-editenv"),
        ("fedora-41", "fedora/41/x86_64/iot", "dnf", "/boot/grub2/grubenv", "grub2-editenv"),
        ("debian-12", "debian/12/x86_64/edge", "apt", "/boot/grub/grubenv", "grub-editenv"),
    ],
)
def test_distro_names_its_backend_ref_and_grubenv_tool(name: str, ref: str, backend: str, grubenv: str,
                                                       editor: str) -> None:  # fmt: skip
    d = distro.get(name)
    assert (d.ostree_ref, d.backend, d.grubenv_path, d.grub_editenv) == (ref, backend, grubenv, editor)


def test_debian_base_set_boots_an_ostree_system() -> None:
    d = distro.get("debian-12")
    assert {"linux-image-amd64", "systemd-sysv", "ostree", "ostree-boot"} <= set(d.base_packages)
    assert "grub-efi-amd64-bin" in d.boot_packages and d.suite == "bookworm"
    assert distro.get("debian-12", "aarch64").kernel_package == "linux-image-arm64"


def test_unknown_distro_suggests_the_closest() -> None:
    with pytest.raises(DistroError, match='did you mean "rhel-9"'):
        distro.get("rhel-8")
    with pytest.raises(DistroError, match="unknown architecture"):
        distro.get("rhel-9", "s390x")
