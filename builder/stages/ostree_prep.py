"""Turn an installed root into the layout rpm-ostree commits: what a stock rpm-ostree device can deploy.

Follows rpm-ostree's ``rust/src/composepost.rs`` / ``src/libpriv/rpmostree-postprocess.cxx`` and osbuild's
``stages/org.osbuild.ostree.preptree``:

- kernel and initramfs in ``/usr/lib/modules/$kver/`` (``vmlinuz``, ``initramfs.img``), ``/boot`` empty;
- the rpm database in ``/usr/share/rpm`` (``%_dbpath`` macro, ``/var/lib/rpm`` as a tmpfiles symlink,
  ``/usr/lib/sysimage/rpm`` as a symlink where the distro uses it);
- system accounts in ``/usr/lib/passwd`` / ``/usr/lib/group`` with ``altfiles`` in nsswitch.conf;
- an empty ``/etc/machine-id``; ``/etc`` moved to ``/usr/etc``;
- timestamp-checked Python bytecode (``.pyc``) rewritten to record source mtime 0, the mtime every
  file of an ostree checkout has (ostree#1469; rpm-ostree resets it the same way);
- ``/home``, ``/root``, ``/opt``, ``/srv``, ``/mnt``, ``/usr/local`` as symlinks into ``/var``
  (``/media`` into ``/run``); ``/var`` emptied, its directories (and the files of user homes) recreated
  at boot by ``/usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf`` (rpm-ostree's own file name).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from builder.stages import StageError
from builder.stages.accounts import Accounts

log = logging.getLogger("fieldshift.compose")

RPMDB = "usr/share/rpm"
AUTOVAR = "usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf"
# (link, target) pairs of rpm-ostree's init_rootfs; contents of the link paths move to the target.
TOPLEVEL_SYMLINKS = (
    ("home", "var/home"),
    ("root", "var/roothome"),
    ("opt", "var/opt"),
    ("srv", "var/srv"),
    ("mnt", "var/mnt"),
    ("media", "run/media"),
    ("usr/local", "../var/usrlocal"),
    ("ostree", "sysroot/ostree"),
)
TOPLEVEL_DIRS = ("boot", "dev", "proc", "run", "sys", "sysroot", "tmp", "usr", "var")
USR_MERGE = ("bin", "sbin", "lib", "lib64")
INTEGRATION = (
    "d /var/home 0755 root root - -",
    "d /var/roothome 0700 root root - -",
    "d /var/opt 0755 root root - -",
    "d /var/srv 0755 root root - -",
    "d /var/mnt 0755 root root - -",
    "d /var/usrlocal 0755 root root - -",
    "L /var/lib/rpm - - - - ../../usr/share/rpm",
)
# Backup and lock files of the account tools (rpm-ostree's passwd_cleanup removes the same).
ACCOUNT_LEFTOVERS = ("passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-", ".pwd.lock")
BUILD_LEFTOVERS = ("var/lib/dnf", "var/cache/dnf", "var/log/dnf.log", "var/log/dnf.librepo.log",
                   "var/log/dnf.rpm.log", "var/log/hawkey.log", "var/cache/ldconfig/aux-cache")
# Files under these /var paths are kept as tmpfiles "f" lines (users' authorized_keys); others are dropped.
KEEP_FILES_UNDER = ("var/home/", "var/roothome/")


DPKG_DB = "usr/lib/sysimage/dpkg"


@dataclass(frozen=True)
class OstreePrepOptions:
    """``dbpath``: where the package database was installed (rpm's ``%_dbpath``, or ``/var/lib/dpkg``).

    ``package_format`` ``"deb"`` (debian-12 through the apt backend) moves dpkg's database to
    ``/usr/lib/sysimage/dpkg`` (as ``builder/debian_ostree.py`` does) and keeps all accounts in
    ``/etc``: Debian has no nss-altfiles.
    """

    dbpath: str = "/var/lib/rpm"
    package_format: str = "rpm"


def _rm(path: Path) -> None:
    """Remove whatever is at ``path`` (file, symlink, device node, directory tree); nothing if absent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def kernel_version(root: Path) -> str:
    """The one ``$kver`` with ``/usr/lib/modules/$kver/vmlinuz`` (errors if none or several)."""
    kvers = sorted(p.parent.name for p in (root / "usr/lib/modules").glob("*/vmlinuz"))
    if not kvers:
        raise StageError("no kernel in the tree (/usr/lib/modules/*/vmlinuz); add the kernel package")
    if len(kvers) > 1:
        raise StageError(f"several kernels in the tree ({', '.join(kvers)}); an ostree commit takes exactly one")
    return kvers[0]


def _kernel(root: Path) -> str:
    kver = kernel_version(root)
    moddir = root / "usr/lib/modules" / kver
    initramfs = moddir / "initramfs.img"
    if not initramfs.exists():
        legacy = root / "boot" / f"initramfs-{kver}.img"
        if not legacy.exists():
            raise StageError(f"no initramfs for kernel {kver} (/usr/lib/modules/{kver}/initramfs.img); "
                             "the kernel package set must provide one (dracut)")
        shutil.move(legacy, initramfs)
    os.chmod(initramfs, 0o644)
    hmac = root / "boot" / f".vmlinuz-{kver}.hmac"
    if hmac.exists():
        shutil.move(hmac, moddir / ".vmlinuz.hmac")
    boot = root / "boot"
    if boot.is_dir():
        for child in boot.iterdir():
            _rm(child)
    return kver


def zero_pyc_mtimes(root: Path) -> int:
    """Make the distro's timestamp-checked ``.pyc`` files valid on a deployment; returns how many changed.

    A ``.pyc`` records its source's mtime (PEP 552 flags 0: bytes 8-11 of the header) and Python ignores
    it when that differs from the ``.py`` it sits next to. ostree stores no mtimes: every file of a
    deployment has mtime 0, so all of the distro's bytecode is stale there, /usr is read-only, and every
    Python process compiles each module it imports again (seconds per boot-time unit on a small CPU).
    Hash-based ``.pyc`` files (flags 1 or 3) are left alone. Files are rewritten, not edited in place, so
    a hardlinked copy of a cached tree is never changed behind the cache's back.
    """
    changed = 0
    for dirpath, _dirs, files in os.walk(root / "usr"):
        if os.path.basename(dirpath) != "__pycache__":
            continue
        for name in files:
            if not name.endswith(".pyc"):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            data = path.read_bytes()
            if len(data) < 16 or data[2:4] != b"\r\n" or data[4:8] != bytes(4) or data[8:12] == bytes(4):
                continue
            st = path.stat()
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_bytes(data[:8] + bytes(4) + data[12:])
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.chown(tmp, st.st_uid, st.st_gid)
            os.replace(tmp, path)
            changed += 1
    return changed


def _rpmdb(root: Path, dbpath: str) -> None:
    src = root / dbpath.strip("/")
    dest = root / RPMDB
    if not src.is_dir():
        raise StageError(f"no rpm database at {dbpath} in the tree; was the package install complete?")
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(src, dest)
    for leftover in list(dest.glob("*-shm")) + list(dest.glob(".*.lock")):
        leftover.unlink()
    for wal in dest.glob("*-wal"):
        if wal.stat().st_size == 0:
            wal.unlink()
    macros = root / "usr/lib/rpm/macros.d/macros.rpm-ostree"
    macros.parent.mkdir(parents=True, exist_ok=True)
    macros.write_text("%_dbpath /usr/share/rpm\n")
    os.chmod(macros, 0o644)
    if dbpath.strip("/") == "usr/lib/sysimage/rpm":
        os.symlink("../../share/rpm", root / "usr/lib/sysimage/rpm")


def _dpkgdb(root: Path, dbpath: str) -> None:
    src = root / dbpath.strip("/")
    if not src.is_dir():
        raise StageError(f"no dpkg database at {dbpath} in the tree; was the package install complete?")
    dest = root / DPKG_DB
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.move(src, dest)


def _split_accounts(root: Path) -> None:
    acc = Accounts.load(root)

    def system(ident: int, name: str) -> bool:
        return name != "root" and (ident < 1000 or ident == 65534)

    lib_passwd = [e for e in acc.passwd if system(e.uid, e.name)]
    lib_group = [g for g in acc.group if system(g.gid, g.name) and not g.members]
    acc.passwd = [e for e in acc.passwd if e not in lib_passwd]
    acc.group = [g for g in acc.group if g not in lib_group]
    acc.save()
    # shadow files keep every entry (rpm-ostree does not split them); save() rewrote them from passwd only.
    original = Accounts.load(root)
    lib = root / "usr/lib"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "passwd").write_text("".join(e.line() + "\n" for e in original.lib_passwd + lib_passwd))
    (lib / "group").write_text("".join(g.line() + "\n" for g in original.lib_group + lib_group))
    os.chmod(lib / "passwd", 0o644)
    os.chmod(lib / "group", 0o644)
    nss = root / "etc/nsswitch.conf"
    if nss.exists():
        out = []
        for line in nss.read_text().splitlines():
            key, _, rest = line.partition(":")
            if key.strip() in ("passwd", "group") and "altfiles" not in rest:
                words = rest.split()
                pos = words.index("files") + 1 if "files" in words else 0
                words.insert(pos, "altfiles")
                line = f"{key}: {' '.join(words)}"
            out.append(line)
        nss.write_text("\n".join(out) + "\n")


def _keep_shadow(root: Path, shadow: str, gshadow: str) -> None:
    for name, text in (("shadow", shadow), ("gshadow", gshadow)):
        path = root / "etc" / name
        path.write_text(text)
        os.chmod(path, 0)


def _move_into_var(root: Path) -> None:
    for link, target in TOPLEVEL_SYMLINKS:
        src = root / link
        dest = root / os.path.normpath(os.path.join(os.path.dirname(link), target))
        if src.is_dir() and not src.is_symlink():
            dest.mkdir(parents=True, exist_ok=True)
            st = src.stat()
            os.chmod(dest, stat.S_IMODE(st.st_mode))
            for child in src.iterdir():
                shutil.move(child, dest / child.name)
            src.rmdir()
        elif src.is_symlink() or src.exists():
            _rm(src)
        src.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, src)


def _owner_names(root: Path) -> tuple[dict[int, str], dict[int, str]]:
    acc = Accounts.load(root)
    users = {e.uid: e.name for e in acc.lib_passwd + acc.passwd}
    groups = {g.gid: g.name for g in acc.lib_group + acc.group}
    return users, groups


def _escape(data: bytes) -> str:
    out = []
    for b in data:
        c = chr(b)
        if c == "\\":
            out.append("\\\\")
        elif 0x20 < b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def _var_to_tmpfiles(root: Path, db_link: str = "") -> list[str]:
    users, groups = _owner_names(root)
    var = root / "var"
    lines: list[str] = []
    dropped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(var):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            rel = "/" + str(path.relative_to(root))
            st = path.lstat()
            owner = f"{users.get(st.st_uid, st.st_uid)} {groups.get(st.st_gid, st.st_gid)}"
            mode = f"{stat.S_IMODE(st.st_mode):04o}"
            if stat.S_ISLNK(st.st_mode):
                lines.append(f"L {rel} - - - - {os.readlink(path)}")
            elif stat.S_ISDIR(st.st_mode):
                lines.append(f"d {rel} {mode} {owner} - -")
            elif stat.S_ISREG(st.st_mode) and any(rel[1:].startswith(k) for k in KEEP_FILES_UNDER):
                lines.append(f"f {rel} {mode} {owner} - {_escape(path.read_bytes())}")
            else:
                dropped.append(rel)
    if dropped:
        log.info("ostree prep: dropped %d files under /var (not deployable): %s", len(dropped), ", ".join(dropped))
    integration = [x for x in INTEGRATION if not (db_link and x.startswith("L /var/lib/rpm "))]
    if db_link:
        integration.append(db_link)
    known = {line.split()[1] for line in lines}
    lines += [x for x in integration if x.split()[1] not in known]
    for child in var.iterdir():
        _rm(child)
    return sorted(set(lines), key=lambda x: (x.split()[1], x))


def _toplevel(root: Path) -> None:
    keep = set(TOPLEVEL_DIRS) | set(USR_MERGE) | {link.split("/")[0] for link, _ in TOPLEVEL_SYMLINKS}
    for child in root.iterdir():
        if child.name not in keep:
            log.info("ostree prep: removing /%s (not part of the ostree layout)", child.name)
            _rm(child)
        elif child.name in USR_MERGE and not child.is_symlink():
            raise StageError(f"/{child.name} is a directory; rpm-ostree needs the /usr merge (/{child.name} -> usr)")
    for name in TOPLEVEL_DIRS:
        path = root / name
        if name in ("dev", "proc", "run", "sys", "tmp", "sysroot") and path.is_dir():
            for child in path.iterdir():
                _rm(child)
        path.mkdir(exist_ok=True)
    os.chmod(root / "tmp", 0o1777)


def apply(root: Path, options: OstreePrepOptions) -> str:
    """Rewrite ``root`` in place into the ostree layout; returns the kernel version."""
    if (root / "usr/etc").exists():
        raise StageError("the tree already has /usr/etc; ostree prep runs once on a fresh tree")
    kver = _kernel(root)
    deb = options.package_format == "deb"
    if deb:
        _dpkgdb(root, options.dbpath)
    else:
        _rpmdb(root, options.dbpath)
    for leftover in BUILD_LEFTOVERS:
        _rm(root / leftover)
    for leftover in ACCOUNT_LEFTOVERS:
        _rm(root / "etc" / leftover)
    etc = root / "etc"
    shadow = (etc / "shadow").read_text() if (etc / "shadow").exists() else ""
    gshadow = (etc / "gshadow").read_text() if (etc / "gshadow").exists() else ""
    if not deb:
        _split_accounts(root)
        _keep_shadow(root, shadow, gshadow)
    machine_id = etc / "machine-id"
    if machine_id.exists() or machine_id.is_symlink():
        machine_id.unlink()
    machine_id.write_text("")
    os.chmod(machine_id, 0o444)
    _move_into_var(root)
    lines = _var_to_tmpfiles(root, "L /var/lib/dpkg - - - - ../../usr/lib/sysimage/dpkg" if deb else "")
    autovar = root / AUTOVAR
    autovar.parent.mkdir(parents=True, exist_ok=True)
    autovar.write_text("# Generated by fieldshift (like rpm-ostree's autovar): /var is populated at boot\n"
                       + "".join(line + "\n" for line in lines))
    os.chmod(autovar, 0o644)
    os.rename(etc, root / "usr/etc")
    _toplevel(root)
    log.debug("ostree prep: %d .pyc files set to source mtime 0", zero_pyc_mtimes(root))
    return kver
