"""GPT disk images assembled from partition images in a plain file: ``sfdisk`` writes the table, qemu-img converts.

No loop devices: the partition images are copied into the disk file at their offsets (holes stay holes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from greenboot.external import run

SECTOR = 512
ALIGN = 1024 * 1024  # partitions start on MiB boundaries
# GPT partition type GUIDs (UEFI spec; root from the Discoverable Partitions Specification, x86-64).
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_X86_64_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Partition:
    """One partition: its filesystem image, GPT type GUID and name."""

    image: Path
    type_guid: str
    name: str

    @property
    def size(self) -> int:
        return _align(self.image.stat().st_size)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def layout_script(partitions: list[Partition]) -> str:
    """The ``sfdisk`` script for ``partitions`` placed back to back from 1 MiB."""
    lines = ["label: gpt", "unit: sectors", f"first-lba: {ALIGN // SECTOR}"]
    start = ALIGN
    for p in partitions:
        lines.append(f'start={start // SECTOR}, size={p.size // SECTOR}, type={p.type_guid}, name="{p.name}"')
        start += p.size
    return "\n".join(lines) + "\n"


def assemble(disk: Path, partitions: list[Partition]) -> None:
    """Write a GPT disk image ``disk`` holding ``partitions`` in order (1 MiB aligned, sparse)."""
    total = ALIGN + sum(p.size for p in partitions) + ALIGN  # room for the backup GPT at the end
    disk.unlink(missing_ok=True)
    with disk.open("wb") as fh:
        fh.truncate(total)
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)], input=layout_script(partitions))
    offset = ALIGN
    with disk.open("r+b") as out:
        for p in partitions:
            _copy_sparse(p.image, out, offset)
            offset += p.size
        out.flush()
        os.fsync(out.fileno())


def _copy_sparse(src: Path, out: BinaryIO, offset: int) -> None:
    zero = bytes(CHUNK)
    with src.open("rb") as fh:
        pos = offset
        while True:
            block = fh.read(CHUNK)
            if not block:
                break
            if block != zero[: len(block)]:
                out.seek(pos)
                out.write(block)
            pos += len(block)


def convert(raw: Path, dest: Path, fmt: str) -> None:
    """Convert the raw disk ``raw`` to ``fmt`` (``qcow2``) at ``dest`` with qemu-img."""
    dest.unlink(missing_ok=True)
    run(["qemu-img", "convert", "-f", "raw", "-O", fmt, str(raw), str(dest)])
