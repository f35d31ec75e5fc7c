"""Bootable disk images (``raw``, ``qcow2``) of an ostree commit: the edge-raw-image equivalent for debian-12.

The disk: GPT with an EFI system partition holding a standalone GRUB (``EFI/BOOT/BOOTX64.EFI``, the
removable-media path firmware boots without NVRAM entries) and an ext4 root filesystem holding an
``ostree admin`` sysroot: the deployment of the commit, ``/boot`` with ostree's BLS entries and the
GRUB menu made from them, the grubenv, and an ostree remote pointing at the release URL so the device
can update (osbuild-composer#1693 is what happens without one). Everything is built in plain files:
``mkfs.ext4 -d``, ``mkfs.vfat`` + mtools, ``sfdisk`` on the image file; no mounts, no loop devices.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from builder.disk import filesystems, gpt, grub, sysroot
from greenboot.errors import UserError

IMAGE_TYPES = ("raw", "qcow2")
ROOT_LABEL = "fs-root"
ESP_LABEL = "ESP"
ESP_SIZE = 64 * 1024 * 1024
# Free space on the root filesystem beyond the first deployment: room for updates to be pulled and staged.
DEFAULT_FREE = 1536 * 1024 * 1024
BASE_KARGS = (f"root=LABEL={ROOT_LABEL}", "rw", "console=tty0", "console=ttyS0,115200")


class ImageError(UserError):
    """A disk image cannot be built as asked."""


@dataclass(frozen=True)
class ImageSpec:
    """What goes on the disk: which commit, the remote it updates from, and the kernel arguments."""

    repo: Path
    commit: str
    ref: str
    image_type: str = "qcow2"
    osname: str = "debian"
    remote: str = "fieldshift"
    remote_url: str | None = None
    kargs: tuple[str, ...] = ()
    grubenv: str = grub.GRUBENV
    free_space: int = DEFAULT_FREE
    grubenv_values: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ImageResult:
    """The written image and what it holds."""

    path: Path
    image_type: str
    size: int
    commit: str
    kargs: tuple[str, ...]


def build_image(spec: ImageSpec, output: Path, *, workdir: Path | None = None, keep: bool = False) -> ImageResult:
    """Write a bootable ``spec.image_type`` disk of ``spec.commit`` to ``output``; nothing is left on failure."""
    if spec.image_type not in IMAGE_TYPES:
        raise ImageError(f'unknown image type "{spec.image_type}"; expected one of {", ".join(IMAGE_TYPES)}')
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="fieldshift-image-", dir=workdir or output.parent))
    try:
        kargs = BASE_KARGS + tuple(spec.kargs)
        root = scratch / "sysroot"
        dep = sysroot.Deployment(
            repo=spec.repo,
            checksum=spec.commit,
            ref=spec.ref,
            osname=spec.osname,
            remote=spec.remote,
            remote_url=spec.remote_url,
            kargs=kargs,
        )
        sysroot.deploy(root, dep, scratch)
        grub.create_grubenv(root / spec.grubenv.lstrip("/"), spec.grubenv_values)

        used = filesystems.tree_size(root)
        root_img = scratch / "root.ext4"
        filesystems.make_ext4(root_img, root, _round_mib(used * 5 // 4 + spec.free_space), ROOT_LABEL)
        efi = scratch / "BOOTX64.EFI"
        grub.make_efi(efi, grub.embedded_config(ROOT_LABEL), scratch)
        esp_img = scratch / "esp.vfat"
        filesystems.make_vfat(esp_img, ESP_SIZE, ESP_LABEL, {"EFI/BOOT/BOOTX64.EFI": efi})
        sysroot.remove(root)

        raw = scratch / "disk.raw"
        gpt.assemble(
            raw,
            [
                gpt.Partition(esp_img, gpt.ESP_TYPE, "ESP"),
                gpt.Partition(root_img, gpt.ROOT_X86_64_TYPE, "root"),
            ],
        )
        tmp_out = output.with_name(f".{output.name}.tmp")
        if spec.image_type == "raw":
            raw.rename(tmp_out)
        else:
            gpt.convert(raw, tmp_out, spec.image_type)
        tmp_out.replace(output)
        return ImageResult(output, spec.image_type, output.stat().st_size, spec.commit, kargs)
    finally:
        if not keep:
            sysroot.remove(scratch / "sysroot")
            shutil.rmtree(scratch, ignore_errors=True)


def _round_mib(n: int) -> int:
    mib = 1024 * 1024
    return (n + mib - 1) // mib * mib


def disk_name(image_type: str) -> str:
    """The file name ``fieldshift build --output DIR`` gives a disk image of ``image_type``."""
    return f"disk.{image_type}"


def from_build(
    *,
    repo: Path,
    ref: str,
    checksum: str,
    image_type: str,
    family: str,
    grubenv_path: str,
    release_url: str | None,
    kargs: tuple[str, ...],
    output_dir: Path,
    remote: str = "fieldshift",
) -> ImageResult:
    """The disk image step of ``fieldshift build --image-type raw|qcow2 --output DIR``: ``DIR/disk.<type>``."""
    if family != "debian":
        raise ImageError(
            f"bootable {image_type} disks are built for debian-12 blueprints only so far "
            f'(this blueprint\'s distro family is "{family}"); build an edge-commit and install it with the kickstart'
        )
    url = f"{release_url.rstrip('/')}/repo" if release_url else None
    spec = ImageSpec(
        repo=repo,
        commit=checksum,
        ref=ref,
        image_type=image_type,
        osname=family,
        remote=remote,
        remote_url=url,
        kargs=kargs,
        grubenv=grubenv_path,
    )
    return build_image(spec, output_dir / disk_name(image_type))
