"""Make real ostree sysroots in temp directories: ``ostree admin init-fs``, ``os-init``, commits, deploys.

Every deployment is a real ``ostree admin --sysroot=DIR deploy`` of a tiny commit that carries a
kernel and initramfs in ``/usr/lib/modules/<kver>/`` (what ostree needs to write BLS entries), so
``DIR/boot/loader/entries/*.conf`` and ``DIR/ostree/boot.N`` are exactly what a device has.
No root mounts are needed. Deployment directories are created mutable
(``OSTREE_SYSROOT_DEBUG=mutable-deployments``) so pytest can delete the temp tree afterwards.

Typical use (the agent tests reuse this)::

    sysroot = Sysroot.create(tmp_path / "root")          # empty, os "fieldos"
    v1 = sysroot.commit("1")                              # -> checksum
    sysroot.deploy(v1)
    sysroot.deploy(sysroot.commit("2"))                   # v2 default, v1 rollback
    [d.version for d in sysroot.deployments()]            # ["2", "1"]

or in one call ``make_sysroot(tmp_path / "root", versions=("1", "2"))``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from greenboot.ostree import Deployment, parse_status  # the one deployment model, re-exported for tests

OSNAME = "fieldos"
REF = "fieldos/x86_64/stable"
KARGS = ("root=LABEL=fieldos-root", "rw")
# ostree keeps deployment roots immutable (chattr +i) unless told otherwise; temp trees must be removable.
ENV = {"OSTREE_SYSROOT_DEBUG": "mutable-deployments"}


def _ostree(args: Sequence[str], *, check: bool = True) -> str:
    env = dict(os.environ)
    env.update(ENV)
    proc = subprocess.run(["ostree", *args], capture_output=True, text=True, env=env, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ostree {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Sysroot:
    """A real ostree sysroot at ``path`` (also the ``--root`` of greenboot in tests)."""

    path: Path
    osname: str = OSNAME
    ref: str = REF

    @property
    def repo(self) -> Path:
        return self.path / "ostree" / "repo"

    @classmethod
    def create(cls, path: Path, osname: str = OSNAME, ref: str = REF) -> Sysroot:
        """``ostree admin init-fs`` + ``os-init`` in a new directory."""
        path.mkdir(parents=True, exist_ok=True)
        _ostree(["admin", "init-fs", "--modern", str(path)])
        _ostree(["admin", "os-init", f"--sysroot={path}", osname])
        return cls(path=path, osname=osname, ref=ref)

    def commit(self, version: str, *, kver: Optional[str] = None, files: Optional[Dict[str, str]] = None) -> str:
        """Commit a tiny tree (os-release, kernel, initramfs, ``files``) to ``ref``; return its checksum.

        ``files`` maps paths inside the tree (e.g. ``usr/lib/greenboot/check/required.d/x.sh``) to text.
        """
        kver = kver or f"6.1.0-{version}"
        tree = self.path / ".sim-trees" / version
        if tree.exists():
            shutil.rmtree(tree)
        mods = tree / "usr" / "lib" / "modules" / kver
        mods.mkdir(parents=True)
        (mods / "vmlinuz").write_text(f"kernel {kver} for version {version}\n")
        (mods / "initramfs.img").write_text(f"initramfs {kver} for version {version}\n")
        (tree / "usr" / "etc").mkdir(parents=True)
        (tree / "usr" / "lib" / "os-release").write_text(
            f'NAME="Field OS"\nID={self.osname}\nPRETTY_NAME="Field OS {version}"\nVERSION_ID="{version}"\n'
        )
        for rel, text in (files or {}).items():
            target = tree / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        out = _ostree(
            [
                f"--repo={self.repo}",
                "commit",
                f"--branch={self.ref}",
                f"--tree=dir={tree}",
                f"--subject=Field OS {version}",
                f"--add-metadata-string=version={version}",
                "--no-bindings",
            ]
        )
        shutil.rmtree(tree)
        return out.strip()

    def deploy(self, revision: Optional[str] = None, kargs: Sequence[str] = KARGS) -> None:
        """``ostree admin deploy``: the revision becomes deployment 0, the old default becomes 1.

        (A device stages and finalizes at shutdown; the resulting sysroot is the same.)
        """
        args = ["admin", "deploy", f"--sysroot={self.path}", f"--os={self.osname}"]
        args += [f"--karg={k}" for k in kargs]
        _ostree([*args, revision or self.ref])

    def set_bootloader(self, name: str) -> None:
        """``sysroot.bootloader`` in the repo config; "none" stops ostree from running grub-mkconfig when it
        finds a ``boot/grub/grub.cfg`` (Debian images, whose menu greenboot.grubmenu writes)."""
        _ostree([f"--repo={self.repo}", "config", "set", "sysroot.bootloader", name])

    def undeploy(self, index: int) -> None:
        _ostree(["admin", "undeploy", f"--sysroot={self.path}", str(index)])

    def deployments(self) -> List[Deployment]:
        """Deployments in boot order (0 = default), parsed from ``ostree admin status``."""
        return parse_status(_ostree(["admin", "status", f"--sysroot={self.path}"]))

    def version_of(self, checksum: str) -> str:
        """The ``version`` metadata of a commit."""
        out = _ostree([f"--repo={self.repo}", "show", "--print-metadata-key=version", checksum], check=False)
        return out.strip().strip("'")

    def deployment_dir(self, deployment: Deployment) -> Path:
        return self.path / "ostree" / "deploy" / deployment.osname / "deploy" / deployment.name

    def entries_dir(self) -> Path:
        return self.path / "boot" / "loader" / "entries"


def make_sysroot(path: Path, versions: Tuple[str, ...] = ("1", "2"), osname: str = OSNAME) -> Sysroot:
    """A sysroot with one deployment per version, deployed in order (the last is the default)."""
    sysroot = Sysroot.create(path, osname=osname)
    for version in versions:
        sysroot.deploy(sysroot.commit(version))
    return sysroot


def clone(src: Sysroot, dest: Path) -> Sysroot:
    """Copy a sysroot (cheaper than rebuilding it for every test); the copy can be changed freely."""
    import dataclasses

    shutil.copytree(src.path, dest, symlinks=True)
    return dataclasses.replace(src, path=dest)
