"""The GRUB menu program ostree runs as ``OSTREE_GRUB2_EXEC -o <sysroot>/boot/loader.N/grub.cfg``.

ostree's grub2 bootloader backend (``src/libostree/ostree-bootloader-grub2.c``; its
``src/boot/grub2/ostree-grub-generator`` is the reference) runs that program after writing the new
``boot/loader.N/entries`` and before swapping the ``boot/loader`` symlink, so the menu changes
atomically together with the entries: a power cut while ostree finalizes a staged deployment leaves
either the old entries and the old menu or the new ones, never a menu naming deleted files.

The program is a few lines around :mod:`greenboot.grubmenu` (boot counting fragment plus one
``menuentry`` per BLS entry, default first): this module writes it with the right interpreter, for the
build host (``sys.executable``) and for the device (``/usr/bin/python3``, installed by
:func:`builder.debian_ostree.install_boot_menu`). ``sysroot.bootloader=grub2`` is set in the sysroot's
repo config and ``OSTREE_GRUB2_EXEC`` in the device's environment (systemd ``DefaultEnvironment``).
"""

from __future__ import annotations

from pathlib import Path

DEVICE_PATH = "/usr/libexec/fieldshift/ostree-grub-menu"
# Kernel paths in BLS entries are relative to the boot filesystem; ostree's ``boot/boot -> .`` symlink
# makes ``/boot/...`` right whether /boot is its own partition or a directory of the root filesystem.
BOOT_PREFIX = "/boot"

_PROGRAM = '''\
"""Write a GRUB menu from the BLS entries next to -o PATH (fieldshift; run by ostree as OSTREE_GRUB2_EXEC)."""
import sys
from pathlib import Path

sys.path[:0] = {path!r}

from greenboot import atomic, grubmenu

if len(sys.argv) != 3 or sys.argv[1] != "-o":
    sys.exit("usage: ostree-grub-menu -o PATH")
out = Path(sys.argv[2])
found = [grubmenu.parse_entry(p) for p in (out.parent / "entries").glob("*.conf")]
found.sort(key=grubmenu.BlsEntry.sort_key, reverse=True)
atomic.write_text(out, grubmenu.render_menu(found, boot_prefix={prefix!r}, timeout={timeout}))
'''


def program_text(python: str, *, timeout: int = 1, path: tuple[str, ...] = ()) -> str:
    """The menu program for interpreter ``python``; ``path`` goes in front of ``sys.path`` (where greenboot is)."""
    return f"#!{python}\n" + _PROGRAM.format(prefix=BOOT_PREFIX, timeout=int(timeout), path=list(path))


def write_program(dest: Path, python: str, *, timeout: int = 1, path: tuple[str, ...] = ()) -> Path:
    """Write the menu program to ``dest`` (mode 0755)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(program_text(python, timeout=timeout, path=path))
    dest.chmod(0o755)
    return dest
