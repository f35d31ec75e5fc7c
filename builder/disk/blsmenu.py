"""Turn ostree's BLS entries into a GRUB menu: the program ostree runs as ``OSTREE_GRUB2_EXEC -o PATH``.

ostree's grub2 bootloader backend (``src/libostree/ostree-bootloader-grub2.c``) runs ``$OSTREE_GRUB2_EXEC
-o <sysroot>/boot/loader.N/grub.cfg`` after writing ``boot/loader.N/entries``, and then swaps the
``boot/loader`` symlink, so the menu changes atomically together with the entries; ostree's own
``ostree-grub-generator`` is the reference for the format. Entries are ordered by their BLS ``version``,
highest (the default deployment) first, so GRUB entry 1 is the rollback deployment.

Standard library only, so the same file runs on a build host and on a device.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional


@dataclass(frozen=True)
class BlsEntry:
    """One ``boot/loader/entries/*.conf`` file."""

    name: str
    title: str
    version: int
    linux: str
    initrd: str
    options: str


def parse_entry(path: Path) -> BlsEntry:
    """Read one BLS entry (``key value`` lines)."""
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#"):
            values[key] = value.strip()
    try:
        version = int(values.get("version", "0"))
    except ValueError:
        version = 0
    return BlsEntry(
        name=path.name,
        title=values.get("title", path.stem),
        version=version,
        linux=values.get("linux", ""),
        initrd=values.get("initrd", ""),
        options=values.get("options", ""),
    )


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _boot_path(path: str) -> str:
    """A BLS path (relative to the boot filesystem) as GRUB sees it from the root filesystem.

    ostree keeps a ``boot/boot -> .`` symlink, so ``/boot/...`` is right whether /boot is its own
    partition or a directory of the root filesystem (as on fieldshift's debian-12 disks).
    """
    return path if path.startswith("/boot/") else "/boot" + path


def render(entries: List[BlsEntry]) -> str:
    """GRUB menu entries for ``entries``, default (highest version) first."""
    out = ["# generated from the BLS entries next to this file by fieldshift's blsmenu; do not edit"]
    ordered = sorted(entries, key=lambda e: (-e.version, e.name))
    for i, e in enumerate(ordered):
        out.append(f"menuentry {_quote(e.title)} --id ostree-{i} {{")
        out.append(f"  linux {_boot_path(e.linux)} {e.options}".rstrip())
        if e.initrd:
            out.append(f"  initrd {_boot_path(e.initrd)}")
        out.append("}")
    return "\n".join(out) + "\n"


def generate(output: Path) -> None:
    """Write the menu for the ``entries`` directory next to ``output`` (temp file, fsync, rename)."""
    entries_dir = output.parent / "entries"
    entries = [parse_entry(p) for p in sorted(entries_dir.glob("*.conf"))] if entries_dir.is_dir() else []
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("w") as fh:
        fh.write(render(entries))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, output)


def main(argv: Optional[List[str]] = None) -> int:
    """``blsmenu -o PATH``: the interface of ``grub2-mkconfig`` that ostree uses."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "-o":
        print("usage: blsmenu -o PATH", file=sys.stderr)
        return 2
    generate(Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
