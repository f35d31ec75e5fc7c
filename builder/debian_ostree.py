"""Debian trees made into rpm-ostree style ostree commits: the prep stage mmdebstrap trees need, then commit.

The layout mirrors what rpm-ostree's ``postprocess`` does (rpm-ostree ``src/libpriv/rpmostree-postprocess.cxx``):
``/etc`` moves to ``/usr/etc``, ``/var`` is emptied and recreated at boot from ``tmpfiles.d`` entries,
``home``, ``root``, ``opt``, ``srv``, ``mnt``, ``media`` and ``usr/local`` become symlinks into ``/var``
(or ``/run``), ``/sysroot`` and ``ostree -> sysroot/ostree`` exist for ostree-prepare-root, ``/boot`` is
empty (the kernel and initramfs live in ``/usr/lib/modules/$kver/``) and ``machine-id`` is empty.

Debian specifics: there is no nss-altfiles, so ``passwd``/``group`` stay in ``/usr/etc`` (ostree's
three-way ``/etc`` merge keeps local users); dpkg's database moves to ``/usr/lib/sysimage/dpkg`` with a
``/var/lib/dpkg`` symlink recreated by tmpfiles, the way the rpmdb moves to ``/usr/share/rpm``.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from greenboot.errors import UserError

# rpm-ostree's toplevel symlinks (target relative to /).
TOPLEVEL_LINKS = {
    "home": "var/home",
    "root": "var/roothome",
    "opt": "var/opt",
    "srv": "var/srv",
    "mnt": "var/mnt",
    "media": "run/media",
    "ostree": "sysroot/ostree",
}
VAR_DIRS = (
    ("d", "/var/home", "0755"),
    ("d", "/var/roothome", "0700"),
    ("d", "/var/opt", "0755"),
    ("d", "/var/srv", "0755"),
    ("d", "/var/mnt", "0755"),
    ("d", "/var/usrlocal", "0755"),
    ("d", "/var/usrlocal/bin", "0755"),
    ("d", "/var/usrlocal/etc", "0755"),
    ("d", "/var/usrlocal/lib", "0755"),
    ("d", "/var/usrlocal/sbin", "0755"),
    ("d", "/var/usrlocal/share", "0755"),
    ("d", "/var/usrlocal/src", "0755"),
)
DPKG_DB = "usr/lib/sysimage/dpkg"
TMPFILES = "usr/lib/tmpfiles.d/fieldshift-var.conf"


class PrepError(UserError):
    """A tree cannot be laid out for ostree (for example it has no kernel)."""


@dataclass(frozen=True)
class Kernel:
    """The kernel a prepared tree boots: its version and files under ``/usr/lib/modules/$kver/``."""

    version: str
    vmlinuz: Path
    initramfs: Path


def find_kernel(tree: Path) -> Kernel:
    """The one kernel in ``tree/usr/lib/modules`` that has both ``vmlinuz`` and ``initramfs.img``."""
    found = [
        Kernel(d.name, d / "vmlinuz", d / "initramfs.img")
        for d in sorted((tree / "usr/lib/modules").glob("*"))
        if (d / "vmlinuz").is_file() and (d / "initramfs.img").is_file()
    ]
    if len(found) != 1:
        raise PrepError(
            f"{tree}: expected exactly one kernel with vmlinuz and initramfs.img in usr/lib/modules, found {len(found)}"
        )
    return found[0]


def _tmpfiles_for_var(var: Path) -> list[str]:
    """tmpfiles.d lines recreating the directories and symlinks of ``var`` (files are dropped, like rpm-ostree)."""
    lines: list[str] = []
    for dirpath, dirnames, filenames in os.walk(var):
        dirnames.sort()
        base = Path(dirpath)
        for name in dirnames + sorted(filenames):
            p = base / name
            st = p.lstat()
            rel = "/" + str(p.relative_to(var.parent))
            if stat.S_ISLNK(st.st_mode):
                lines.append(f"L {rel} - - - - {os.readlink(p)}")
            elif stat.S_ISDIR(st.st_mode):
                mode = f"{stat.S_IMODE(st.st_mode):04o}"
                lines.append(f"d {rel} {mode} {st.st_uid} {st.st_gid} - -")
    return lines


def prepare(tree: Path) -> Kernel:
    """Lay ``tree`` (an installed Debian root) out the way rpm-ostree does, in place; returns its kernel.

    Idempotent: running it on a prepared tree changes nothing.
    """
    kernel = find_kernel(tree)
    etc, usr_etc = tree / "etc", tree / "usr/etc"
    if etc.is_dir() and not etc.is_symlink():
        if usr_etc.exists():
            shutil.rmtree(usr_etc)
        etc.rename(usr_etc)
    (usr_etc / "machine-id").write_text("")
    # dpkg's database is part of the OS, not of /var.
    dpkg = tree / "var/lib/dpkg"
    if dpkg.is_dir() and not dpkg.is_symlink():
        dest = tree / DPKG_DB
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        dpkg.rename(dest)
    var = tree / "var"
    lines = [f"{kind} {path} {mode} root root - -" for kind, path, mode in VAR_DIRS]
    known = {line.split()[1] for line in lines}
    lines += [line for line in _tmpfiles_for_var(var) if line.split()[1] not in known]
    lines.append(f"L /var/lib/dpkg - - - - ../../{DPKG_DB}")
    conf = tree / TMPFILES
    if conf.exists():
        lines = conf.read_text().splitlines()
    else:
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("# /var as installed, recreated at boot (rpm-ostree style)\n" + "\n".join(lines) + "\n")
    _empty(var)
    usr_local = tree / "usr/local"
    if not usr_local.is_symlink():
        shutil.rmtree(usr_local, ignore_errors=True)
        usr_local.symlink_to("../var/usrlocal")
    for name, target in TOPLEVEL_LINKS.items():
        p = tree / name
        if p.is_symlink():
            continue
        if p.exists():
            shutil.rmtree(p)
        p.symlink_to(target)
    for name in ("sysroot", "boot", "dev", "proc", "sys", "run", "tmp"):
        d = tree / name
        d.mkdir(exist_ok=True)
        _empty(d)
    (tree / "tmp").chmod(0o1777)
    return kernel


def _empty(d: Path) -> None:
    for child in d.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
