"""Boot integration for Debian trees: the GRUB menu program ostree's grub2 backend runs, and its environment.

Debian's GRUB has no ``blscfg``, so a menu must be generated from ostree's BLS entries. ostree's grub2
backend (``sysroot.bootloader=grub2``, set by :mod:`builder.disk.sysroot`) runs ``$OSTREE_GRUB2_EXEC
-o boot/loader.N/grub.cfg`` before it swaps ``boot/loader``, so menu and entries change together.
This stage puts the program (:mod:`builder.disk.blsmenu`, on top of :mod:`greenboot.grubmenu`) at
``/usr/libexec/fieldshift/ostree-grub-menu`` and exports ``OSTREE_GRUB2_EXEC`` to every service
(systemd ``DefaultEnvironment``: the agent's finalize, greenboot's rollback) and to login shells
(``/etc/environment``). Runs before ostree prep (it writes ``/etc``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from builder.disk import blsmenu
from builder.stages.fieldshift import PROJECT, PYTHON_DIR

SYSTEMD_CONF = "usr/lib/systemd/system.conf.d/50-fieldshift-ostree-grub.conf"
ENV_LINE = f"OSTREE_GRUB2_EXEC={blsmenu.DEVICE_PATH}"


def apply(root: Path) -> None:
    """Install the menu program and the ``OSTREE_GRUB2_EXEC`` environment into ``root`` (idempotent).

    The program needs the ``greenboot`` package; the ``[fieldshift]`` stage installs it with the agent
    or greenboot, and when the blueprint asks for neither, the package alone is copied here.
    """
    package = root / PYTHON_DIR / "greenboot"
    if not package.is_dir():
        shutil.copytree(PROJECT / "greenboot", package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    blsmenu.write_program(root / blsmenu.DEVICE_PATH.lstrip("/"), "/usr/bin/python3", path=(f"/{PYTHON_DIR}",))
    conf = root / SYSTEMD_CONF
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "# fieldshift: ostree's grub2 backend runs this program to write the GRUB menu (Debian GRUB has no blscfg)\n"
        f'[Manager]\nDefaultEnvironment="{ENV_LINE}"\n'
    )
    os.chmod(conf, 0o644)
    env = root / "etc/environment"
    lines = env.read_text().splitlines() if env.exists() else []
    if ENV_LINE not in lines:
        env.parent.mkdir(parents=True, exist_ok=True)
        env.write_text("\n".join([*lines, ENV_LINE]) + "\n")
