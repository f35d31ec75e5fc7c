"""Offline bundles: one tar with the signed catalog and only the static deltas a device needs.

``fieldshift bundle --release-dir DIR --channel NAME [--from VERSION] [--to VERSION] --out FILE``
takes the catalog and signature exactly as published (the device verifies them) and the deltas
from the device's version to the target, passing through every barrier release on the way; a
device with no version (or one whose delta was not published) gets the from-scratch delta. The
format and the device side are in :mod:`updater.bundle`.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from builder.publish import REPO_NAME, delta_dir
from greenboot import atomic
from greenboot.errors import UserError
from updater import bundle as device_bundle
from updater import catalog as cat


class BundleBuildError(UserError):
    """The bundle cannot be made as asked."""


@dataclass(frozen=True)
class BundleInfo:
    """What went into a bundle."""

    path: Path
    channel: str
    target: cat.Release
    hops: tuple[device_bundle.Hop, ...]
    size: int

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "channel": self.channel,
            "version": self.target.version,
            "commit": self.target.commit,
            "size": self.size,
            "hops": [{"from": h.from_commit, "to": h.to_commit, "path": h.path} for h in self.hops],
        }


def _hop(repo: Path, release_dir: Path, start: cat.Release | None, target: cat.Release) -> device_bundle.Hop:
    src = start.commit if start is not None else None
    if src is not None and not (delta_dir(repo, src, target.commit) / "superblock").is_file():
        src = None  # no delta published from that release: fall back to the from-scratch one
    path = delta_dir(repo, src, target.commit)
    if not (path / "superblock").is_file():
        raise BundleBuildError(f"{release_dir} has no static delta to {target.version}; republish it")
    return device_bundle.Hop(src, target.commit, path.relative_to(release_dir).as_posix())


def plan_hops(release_dir: Path, channel: cat.Channel, start: cat.Release | None,
              target: cat.Release) -> list[device_bundle.Hop]:
    """The deltas a device at ``start`` needs to reach ``target``, through every barrier between."""
    repo = release_dir / REPO_NAME
    if start is None:
        return [_hop(repo, release_dir, None, target)]
    stops = [
        r for r in channel.releases
        if r.barrier and not r.withdrawn and cat.is_newer(r.version, start.version)
        and cat.is_newer(target.version, r.version)
    ]
    hops = []
    current = start
    for stop in [*stops, target]:
        hops.append(_hop(repo, release_dir, current, stop))
        current = stop
    return hops


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def make_bundle(release_dir: Path, channel_name: str, out: Path, *, from_version: str | None = None,
                to_version: str | None = None) -> BundleInfo:
    """Write the bundle for a device at ``from_version`` (None = no usable version) to ``out``."""
    data_path, sig_path = release_dir / cat.CATALOG_NAME, release_dir / cat.SIGNATURE_NAME
    if not data_path.is_file() or not sig_path.is_file():
        raise BundleBuildError(f"{release_dir} is not a published release dir (no catalog.json and signature)")
    data, sig = data_path.read_bytes(), sig_path.read_bytes()
    try:
        catalog = cat.parse(data)
    except cat.CatalogMalformed as err:
        raise BundleBuildError(f"{data_path} is not a valid catalog: {err.message}") from err
    channel = catalog.channel(channel_name)
    if to_version is not None:
        target = channel.release(to_version)
        if target.withdrawn:
            raise BundleBuildError(f"release {target.version} of {channel_name!r} is withdrawn")
    else:
        newest = channel.newest()
        if newest is None:
            raise BundleBuildError(f"channel {channel_name!r} has no release that is not withdrawn")
        target = newest
    start = channel.release(from_version) if from_version is not None else None
    if start is not None and not cat.is_newer(target.version, start.version):
        raise BundleBuildError(f"a device at {start.version} needs nothing to reach {target.version}")
    hops = plan_hops(release_dir, channel, start, target)
    manifest = {"channel": channel_name, "hops": [{"from": h.from_commit, "to": h.to_commit, "path": h.path}
                                                  for h in hops]}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, cat.CATALOG_NAME, data)
            _add_bytes(tar, cat.SIGNATURE_NAME, sig)
            _add_bytes(tar, device_bundle.MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
            for hop in hops:
                files = sorted((release_dir / hop.path).iterdir(), key=lambda p: (p.name != "superblock", p.name))
                for f in files:
                    info = tar.gettarinfo(os.fspath(f), arcname=f"{hop.path}/{f.name}")
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mtime = 0
                    info.mode = 0o644
                    with open(f, "rb") as fh:
                        tar.addfile(info, fh)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        atomic.fsync_dir(out.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BundleInfo(out, channel_name, target, tuple(hops), out.stat().st_size)


@click.command("bundle")
@click.option("--release-dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A published release dir.")
@click.option("--channel", required=True, help="The channel the device follows.")
@click.option("--from", "from_version", metavar="VERSION", help="The version the device runs (default: none).")
@click.option("--to", "to_version", metavar="VERSION", help="Target release (default: the channel's newest).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Bundle file to write.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bundle_command(release_dir: Path, channel: str, from_version: str | None, to_version: str | None, out: Path,
                   as_json: bool) -> None:
    """Write an offline bundle (USB stick, sneakernet) for devices of a channel."""
    info = make_bundle(release_dir, channel, out, from_version=from_version, to_version=to_version)
    if as_json:
        click.echo(json.dumps(info.to_json()))
    else:
        path = " -> ".join([from_version or "scratch", *[_hop_label(info, h) for h in info.hops]])
        click.echo(f"wrote {out} ({info.size} bytes): {channel} {path}")


def _hop_label(info: BundleInfo, hop: device_bundle.Hop) -> str:
    return info.target.version if hop.to_commit == info.target.commit else hop.to_commit[:12]
