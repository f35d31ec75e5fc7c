"""The apt package backend (debian-12): resolve with apt in a private state directory, install with mmdebstrap.

``resolve`` runs ``apt-get install --print-uris`` against an empty dpkg status in a private apt
directory under the request's ``cache_dir`` (the host's apt configuration is never touched), which
lists every package a fresh ``minbase`` tree plus the request needs, with exact versions and SHA256
sums. ``install`` hands exactly that set (pinned ``name=version``) to ``mmdebstrap``, whose mirror
argument is the request's apt sources file as is (the host's ``debian.sources``).

The tree leaves ``install`` ready for the ostree preparation that rpm-ostree does: the kernel as
``/usr/lib/modules/$kver/vmlinuz`` and an initramfs built by dracut with Debian's ``ostree`` module
(from ``ostree-boot``) as ``/usr/lib/modules/$kver/initramfs.img``, ``/boot`` empty.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from builder.backends import (
    DepsolveError,
    MissingPackageError,
    PackageRequest,
    PackageSet,
    PackageSpec,
    Progress,
    RepositoryError,
    ResolvedPackage,
    no_progress,
)
from greenboot.external import ToolError, run

# Debian's architecture names for the ones the distro definitions use.
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
# The suite name of each Debian release (the sources file may list several suites).
SUITES = {"12": "bookworm", "13": "trixie"}
# Storage and filesystem drivers the initramfs carries; everything else loads from the root fs.
INITRAMFS_DRIVERS = (
    "virtio_blk virtio_scsi virtio_pci sd_mod ahci nvme usb_storage xhci_pci mmc_block sdhci_pci "
    "ext4 vfat nls_cp437 nls_iso8859_1"
)
# dracut modules of an ostree initramfs: systemd in the initramfs plus ostree-prepare-root.
INITRAMFS_MODULES = (
    "base systemd systemd-initrd dracut-systemd ostree rootfs-block kernel-modules fs-lib udev-rules shutdown"
)

# What mmdebstrap's ``minbase`` variant installs before the requested packages.
MINBASE = ("?essential", "?priority(required)", "apt")

_PRINT_URI = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+) (?P<size>\d+) (?P<hash>\S+)$")


@dataclass(frozen=True)
class AptDirs:
    """The private apt configuration of one request: sources, lists, archives and an empty dpkg status."""

    root: Path

    @property
    def sources(self) -> Path:
        return self.root / "sources.list.d"

    @property
    def status(self) -> Path:
        return self.root / "status"

    def options(self, arch: str) -> list[str]:
        opts = {
            "Dir::Etc::SourceList": "/dev/null",
            "Dir::Etc::SourceParts": str(self.sources),
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": "/dev/null",
            "Dir::State": str(self.root / "state"),
            "Dir::State::status": str(self.status),
            "Dir::Cache": str(self.root / "cache"),
            "APT::Architecture": arch,
            "APT::Architectures::": arch,
            "APT::Install-Recommends": "false",
            "Acquire::ForceHash": "SHA256",
            "Debug::NoLocking": "true",
        }
        argv: list[str] = []
        for key, value in opts.items():
            argv += ["-o", f"{key}={value}"]
        return argv


def deb_arch(arch: str) -> str:
    """Debian's name for an architecture (``x86_64`` -> ``amd64``)."""
    return DEB_ARCH.get(arch, arch)


def suite_for(releasever: str) -> str:
    """The Debian suite (``bookworm``) of a release version (``12``)."""
    return SUITES.get(releasever, releasever)


def split_version(full: str) -> tuple[int, str, str]:
    """A Debian version ``[epoch:]upstream[-revision]`` as (epoch, upstream, revision)."""
    epoch = 0
    if ":" in full:
        head, full = full.split(":", 1)
        epoch = int(head)
    upstream, _, revision = full.rpartition("-")
    if not upstream:
        return epoch, revision, ""
    return epoch, upstream, revision


def debian_version(pkg: ResolvedPackage) -> str:
    """The Debian version string of a resolved package (inverse of :func:`split_version`)."""
    text = f"{pkg.version}-{pkg.release}" if pkg.release else pkg.version
    return f"{pkg.epoch}:{text}" if pkg.epoch else text


def parse_print_uris(output: str) -> list[ResolvedPackage]:
    """Packages from ``apt-get --print-uris`` lines (``'URI' name_version_arch.deb size HASH:hex``)."""
    found: list[ResolvedPackage] = []
    for line in output.splitlines():
        m = _PRINT_URI.match(line.strip())
        if not m:
            continue
        filename = urllib.parse.unquote(m.group("file"))
        if not filename.endswith(".deb"):
            continue
        name, full, arch = filename[: -len(".deb")].split("_")
        epoch, version, release = split_version(full)
        algo, _, digest = m.group("hash").partition(":")
        found.append(
            ResolvedPackage(
                name=name,
                epoch=epoch,
                version=version,
                release=release,
                arch=arch,
                checksum=f"{algo.lower()}:{digest}",
                location=m.group("uri"),
            )
        )
    return found


class AptBackend:
    """debian-12 trees: apt resolves, mmdebstrap installs (variant ``minbase`` plus the request)."""

    def _dirs(self, request: PackageRequest) -> AptDirs:
        dirs = AptDirs(request.cache_dir / "apt" / f"{request.distro}-{request.arch}")
        for sub in ("state/lists/partial", "cache/archives/partial"):
            (dirs.root / sub).mkdir(parents=True, exist_ok=True)
        if dirs.sources.exists():
            shutil.rmtree(dirs.sources)
        dirs.sources.mkdir(parents=True)
        for i, src in enumerate(request.repo_files):
            if not src.is_file():
                raise RepositoryError(f"apt sources file {src} does not exist")
            suffix = ".sources" if src.name.endswith(".sources") else ".list"
            shutil.copyfile(src, dirs.sources / f"{i:02d}-{src.stem}{suffix}")
        dirs.status.write_text("")
        return dirs

    def resolve(self, request: PackageRequest) -> PackageSet:
        """The exact package set of a ``minbase`` tree plus ``request.specs``, as apt resolves it today."""
        if not request.repo_files:
            raise RepositoryError("the apt backend needs an apt sources file (for example the host's debian.sources)")
        dirs = self._dirs(request)
        arch = deb_arch(request.arch)
        opts = dirs.options(arch)
        try:
            run(["apt-get", *opts, "update", "-q"])
        except ToolError as err:
            raise RepositoryError(f"apt cannot read the repositories in {request.repo_files[0]}: {err}") from err
        specs = [s.spec for s in request.specs]
        argv = ["apt-get", *opts, "install", "--print-uris", "-qq", "-y", *MINBASE, *specs]
        proc = run(argv, check=False)
        if proc.returncode != 0:
            raise _depsolve_error(proc.stderr, request.specs)
        packages = parse_print_uris(proc.stdout)
        if not packages:
            raise DepsolveError("apt resolved no packages at all; is the sources file empty?")
        return PackageSet(packages=tuple(packages), request=request)

    def install(self, pkgset: PackageSet, root: Path, progress: Progress = no_progress) -> None:
        """Install exactly ``pkgset`` into the empty directory ``root`` with mmdebstrap, then lay out the kernel."""
        request = pkgset.request
        pins = ",".join(f"{p.name}={debian_version(p)}" for p in pkgset.packages)
        progress(f"mmdebstrap: installing {len(pkgset.packages)} packages")
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            f"--architectures={deb_arch(request.arch)}",
            f"--include={pins}",
            "--aptopt=APT::Install-Recommends false",
            f"--customize-hook={_INITRAMFS_HOOK}",
            "--skip=cleanup/apt/lists",
            suite_for(request.releasever),
            str(root),
            str(request.repo_files[0]),
        ]
        try:
            run(argv, timeout=3600)
        except ToolError as err:
            raise RepositoryError(f"mmdebstrap could not install the tree into {root}: {err}") from err
        _clear_dev(root)
        progress("mmdebstrap: tree ready")


def _clear_dev(root: Path) -> None:
    """Remove the device nodes mmdebstrap made in ``/dev`` (devtmpfs provides them at boot; ostree refuses them)."""
    dev = root / "dev"
    if not dev.is_dir():
        return
    for child in sorted(dev.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _depsolve_error(stderr: str, specs: tuple[PackageSpec, ...]) -> Exception:
    m = re.search(r"Unable to locate package (\S+)", stderr)
    if m:
        name = m.group(1)
        origin = next((s.label for s in specs if s.spec.split("=")[0] == name), f'"{name}"')
        return MissingPackageError(f"no apt repository has package {name} (asked for by {origin})")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = lines[-1] if lines else "apt gave no reason"
    return DepsolveError(f"apt cannot install the requested packages together: {detail}")


# Runs inside mmdebstrap (which mounts /proc, /sys and /dev for hooks): for each kernel, move it to
# /usr/lib/modules/$kver/vmlinuz (rpm-ostree's layout) and build an ostree-capable initramfs next to it.
_INITRAMFS_HOOK = (
    'set -e; for kdir in "$1"/usr/lib/modules/*; do kver=${kdir##*/}; '
    '[ -f "$1/boot/vmlinuz-$kver" ] || continue; '
    'cp "$1/boot/vmlinuz-$kver" "$kdir/vmlinuz"; '
    f'chroot "$1" dracut --quiet --force --no-hostonly --reproducible --no-early-microcode -m "{INITRAMFS_MODULES}" '
    f'--drivers "{INITRAMFS_DRIVERS}" --kver "$kver" "/usr/lib/modules/$kver/initramfs.img"; '
    'chmod 0644 "$kdir/initramfs.img"; done; '
    'rm -f "$1"/boot/vmlinuz-* "$1"/boot/initrd.img-* "$1"/boot/System.map-* "$1"/boot/config-* '
    '"$1"/vmlinuz "$1"/vmlinuz.old "$1"/initrd.img "$1"/initrd.img.old'
)
