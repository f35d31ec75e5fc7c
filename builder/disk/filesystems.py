"""Filesystem images from directories, without mounting: ext4 via ``mkfs.ext4 -d``, FAT via ``mkfs.vfat`` + mtools."""

from __future__ import annotations

import os
from pathlib import Path

from greenboot.external import run

MIB = 1024 * 1024


def tree_size(root: Path) -> int:
    """Bytes the files under ``root`` occupy (hard links counted once, rounded up to 4 KiB blocks)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += (st.st_size + 4095) // 4096 * 4096
    return total


def make_ext4(image: Path, source: Path, size: int, label: str, uuid: str | None = None) -> None:
    """Write an ext4 filesystem of ``size`` bytes holding ``source`` (owners, modes, hard links kept) to ``image``."""
    image.unlink(missing_ok=True)
    argv = ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(source), "-E", "root_owner=0:0"]
    # GRUB 2.06 reads ext4 but not these newer features.
    argv += ["-O", "^metadata_csum_seed,^orphan_file"] if _mke2fs_knows("orphan_file") else []
    if uuid:
        argv += ["-U", uuid]
    argv += [str(image), f"{size // 1024}k"]
    run(argv)


def _mke2fs_knows(feature: str) -> bool:
    conf = Path("/etc/mke2fs.conf")
    return conf.is_file() and feature in conf.read_text()


def make_vfat(image: Path, size: int, label: str, files: dict[str, Path]) -> None:
    """Write a FAT filesystem of ``size`` bytes to ``image`` with ``files`` (``EFI/BOOT/BOOTX64.EFI`` -> source)."""
    image.unlink(missing_ok=True)
    run(["mkfs.vfat", "-C", "-n", label, "-i", "f1e1d5e1", str(image), str(size // 1024)])
    made: set[str] = set()
    for dest in sorted(files):
        parts = dest.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                run(["mmd", "-i", str(image), f"::/{d}"])
                made.add(d)
        run(["mcopy", "-i", str(image), "-o", str(files[dest]), f"::/{dest}"])
