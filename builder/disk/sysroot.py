"""An ostree sysroot in a directory, as a disk's root filesystem holds it: ``ostree admin --sysroot=DIR``.

``deploy`` does what Anaconda's ``ostreesetup`` does on a real disk: init-fs, os-init, pull the commit
into the sysroot's repo under the remote's name (so the device can upgrade from it), add the remote,
deploy with kernel arguments. ostree writes the BLS entries and, with ``sysroot.bootloader=grub2``,
runs ``OSTREE_GRUB2_EXEC`` to write the GRUB menu next to them (:mod:`builder.disk.blsmenu`).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from builder.disk import blsmenu
from greenboot.external import run


@dataclass(frozen=True)
class Deployment:
    """What to deploy: commit ``checksum`` from ``repo``, tracked as ``remote:ref`` on the device."""

    repo: Path
    checksum: str
    ref: str
    osname: str
    remote: str
    remote_url: str | None
    kargs: tuple[str, ...]


def _admin(sysroot: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return run(["ostree", "admin", *args, f"--sysroot={sysroot}"], env=env).stdout


def _repo(sysroot: Path, *args: str) -> str:
    return run(["ostree", f"--repo={sysroot / 'ostree/repo'}", *args]).stdout


def menu_program(workdir: Path) -> Path:
    """The GRUB menu program for this build host's Python (for ``OSTREE_GRUB2_EXEC``)."""
    return blsmenu.write_program(workdir / "ostree-grub-menu", sys.executable)


def deploy(sysroot: Path, dep: Deployment, workdir: Path) -> Path:
    """Make ``sysroot`` an ostree sysroot with ``dep`` deployed (as the new default, earlier ones kept).

    Returns the deployment's root directory. Deploying into an existing sysroot adds a deployment.
    """
    sysroot.mkdir(parents=True, exist_ok=True)
    if not (sysroot / "ostree/repo/config").exists():
        run(["ostree", "admin", "init-fs", "--modern", str(sysroot)])
    if not (sysroot / "ostree/deploy" / dep.osname).is_dir():
        _admin(sysroot, "os-init", dep.osname)
    _repo(sysroot, "config", "set", "sysroot.bootloader", "grub2")
    _repo(sysroot, "config", "set", "sysroot.bootprefix", "true")
    if dep.remote_url:
        _repo(sysroot, "remote", "add", "--force", "--no-gpg-verify", dep.remote, dep.remote_url)
    _repo(sysroot, "pull-local", str(dep.repo), dep.checksum)
    _repo(sysroot, "refs", "--force", f"--create={dep.remote}:{dep.ref}", dep.checksum)
    (sysroot / "boot/grub").mkdir(parents=True, exist_ok=True)
    if not (sysroot / "boot/loader").is_symlink():
        (sysroot / "boot/loader.0/entries").mkdir(parents=True, exist_ok=True)
        (sysroot / "boot/loader").symlink_to("loader.0")
    env = {"OSTREE_GRUB2_EXEC": str(menu_program(workdir))}
    args = ["deploy", f"--os={dep.osname}", "--retain", "--karg-none"] + [f"--karg-append={k}" for k in dep.kargs]
    _admin(sysroot, *args, f"{dep.remote}:{dep.ref}", env=env)
    deploys = sorted((sysroot / "ostree/deploy" / dep.osname / "deploy").glob(f"{dep.checksum}.*"))
    deploys = [d for d in deploys if d.is_dir()]
    if not deploys:
        raise FileNotFoundError(f"ostree admin deploy left no deployment of {dep.checksum} in {sysroot}")
    return deploys[-1]


def remove(sysroot: Path) -> None:
    """Delete a sysroot directory (ostree marks deployment roots immutable; that flag is cleared first)."""
    for d in sysroot.glob("ostree/deploy/*/deploy/*"):
        if d.is_dir() and not d.is_symlink():
            run(["chattr", "-i", str(d)], check=False)
    shutil.rmtree(sysroot, ignore_errors=True)


def origin_refspec(deployment_root: Path) -> str:
    """The refspec a deployment's ``.origin`` file tracks."""
    origin = deployment_root.with_name(deployment_root.name + ".origin")
    for line in origin.read_text().splitlines():
        if line.startswith("refspec="):
            return line.split("=", 1)[1]
    return ""
