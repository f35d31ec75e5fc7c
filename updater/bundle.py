"""Offline bundles on the device: verify the catalog inside a bundle and import its static deltas.

A bundle (written by ``fieldshift bundle``) is an uncompressed tar holding, in this order::

    catalog.json                the release catalog, byte for byte as published
    catalog.json.sig            its signature file
    fieldshift-bundle.json      manifest: {"channel": ..., "hops": [{"from": sha|null, "to": sha, "path": ...}]}
    repo/deltas/XX/NAME/superblock, repo/deltas/XX/NAME/0 ...   the static deltas of each hop

Trust comes only from the signed catalog: the manifest just says where the deltas are. Every hop
must end at a commit that the verified catalog lists, the tar may hold nothing but the names above,
and ``ostree static-delta apply-offline`` checks every object it writes against its checksum, so the
imported commit is exactly the one the catalog signs. Importing is idempotent: hops whose commit
the repo already has are skipped.

Runs on Python 3.9 (device code).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Iterable

from greenboot.errors import UserError
from greenboot.external import ToolError, run
from updater import catalog as cat
from updater.ostree import has_commit

MANIFEST_NAME = "fieldshift-bundle.json"
MAX_MANIFEST_BYTES = 64 * 1024
_DELTA_FILE_RE = re.compile(r"^repo/deltas/[A-Za-z0-9_+-]{2}/[A-Za-z0-9_+-]{41,100}/(superblock|\d{1,6})$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{64}$")


class BundleError(UserError):
    """The offline bundle is unreadable, holds unexpected files, or does not fit this repository."""


@dataclass(frozen=True)
class Hop:
    """One static delta in a bundle: from a commit (None = from scratch) to a release commit."""

    from_commit: str | None
    to_commit: str
    path: str  # the delta's directory inside the bundle, e.g. repo/deltas/ab/cdef...


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, what: str) -> bytes:
    if member.size > limit:
        raise cat.CatalogTooLarge(f"{what} in the bundle is {member.size} bytes, over the {limit}-byte limit")
    handle: IO[bytes] | None = tar.extractfile(member)
    if handle is None:
        raise BundleError(f"cannot read {what} from the bundle")
    with handle:
        data = handle.read(limit + 1)
    if len(data) != member.size:
        raise BundleError(f"{what} in the bundle is truncated")
    return data


def _members(tar: tarfile.TarFile, bundle: Path) -> dict[str, tarfile.TarInfo]:
    """Every member by name, refusing anything but the expected regular files."""
    found: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        name = member.name
        if member.isdir():
            continue
        if not member.isreg():
            raise BundleError(f"bundle {bundle} holds {name!r}, which is not a regular file")
        if name.startswith("/") or ".." in name.split("/"):
            raise BundleError(f"bundle {bundle} holds the unsafe path {name!r}")
        if name not in (cat.CATALOG_NAME, cat.SIGNATURE_NAME, MANIFEST_NAME) and not _DELTA_FILE_RE.match(name):
            raise BundleError(f"bundle {bundle} holds the unexpected file {name!r}")
        if name in found:
            raise BundleError(f"bundle {bundle} holds {name!r} twice")
        found[name] = member
    for required in (cat.CATALOG_NAME, cat.SIGNATURE_NAME, MANIFEST_NAME):
        if required not in found:
            raise BundleError(f"bundle {bundle} has no {required}; make it with `fieldshift bundle`")
    return found


def _parse_manifest(data: bytes, bundle: Path) -> tuple[str, list[Hop]]:
    try:
        obj = json.loads(data.decode("utf-8"))
        channel = obj["channel"]
        hops = [Hop(h["from"], h["to"], h["path"]) for h in obj["hops"]]
    except (ValueError, KeyError, TypeError) as err:
        raise BundleError(f"bundle {bundle} has an unreadable {MANIFEST_NAME}") from err
    def valid(checksum: object) -> bool:
        return isinstance(checksum, str) and _COMMIT_RE.match(checksum) is not None

    for hop in hops:
        if not valid(hop.to_commit) or (hop.from_commit is not None and not valid(hop.from_commit)):
            raise BundleError(f"bundle {bundle} manifest names an invalid commit checksum")
        if not isinstance(hop.path, str) or not hop.path.startswith("repo/deltas/"):
            raise BundleError(f"bundle {bundle} manifest names an invalid delta path")
    if not isinstance(channel, str) or not hops:
        raise BundleError(f"bundle {bundle} manifest names no channel or no deltas")
    return channel, hops


def _apply_offline(repo_path: Path, delta_dir: Path) -> None:
    try:
        run(["ostree", "static-delta", "apply-offline", f"--repo={repo_path}", os.fspath(delta_dir / "superblock")])
    except ToolError as err:
        last = (err.stderr.strip().splitlines() or ["no output"])[-1]
        raise BundleError(f"ostree could not apply the bundle's delta into {repo_path}: {last}") from err


def apply_bundle(
    bundle: str | os.PathLike[str],
    repo_path: str | os.PathLike[str],
    trusted_keys: Iterable[cat.TrustedKey],
    *,
    last_serial: int | None,
    now: datetime,
    channel: str | None = None,
) -> cat.Catalog:
    """Verify the bundle's catalog (all trust rules) and import its deltas into ``repo_path``.

    Returns the verified catalog; afterwards the repo holds the commit of every hop's target, so
    the caller can deploy the release it chooses (e.g. with :func:`updater.catalog.plan_update`)
    by checksum. ``channel``, when given, must be the channel the bundle was made for.
    """
    bundle_path, repo = Path(bundle), Path(repo_path)
    if not (repo / "config").is_file():
        raise BundleError(f"{repo} is not an ostree repository")
    try:
        tar = tarfile.open(bundle_path, mode="r:*")  # noqa: SIM115 - closed by the with block below
    except (OSError, tarfile.TarError) as err:
        raise BundleError(f"cannot read bundle {bundle_path}: {err}") from err
    with tar:
        members = _members(tar, bundle_path)
        data = _read_member(tar, members[cat.CATALOG_NAME], cat.MAX_CATALOG_BYTES, cat.CATALOG_NAME)
        sig = _read_member(tar, members[cat.SIGNATURE_NAME], cat.MAX_SIGNATURE_BYTES, cat.SIGNATURE_NAME)
        catalog = cat.verify(data, sig, trusted_keys, last_serial=last_serial, now=now)
        made_for, hops = _parse_manifest(
            _read_member(tar, members[MANIFEST_NAME], MAX_MANIFEST_BYTES, MANIFEST_NAME), bundle_path
        )
        if channel is not None and made_for != channel:
            raise BundleError(f"bundle {bundle_path} is for channel {made_for!r}, this device follows {channel!r}")
        listed = {r.commit for r in catalog.channel(made_for).releases}
        for hop in hops:
            if hop.to_commit not in listed:
                raise cat.CommitMismatch(
                    f"bundle {bundle_path} carries commit {hop.to_commit[:12]}…, which its signed catalog does "
                    f"not list in channel {made_for!r}; refusing it"
                )
        for hop in hops:
            if has_commit(repo, hop.to_commit):
                continue
            if hop.from_commit is not None and not has_commit(repo, hop.from_commit):
                have = catalog.channel(made_for).find(commit=hop.from_commit)
                name = have.version if have else hop.from_commit[:12]
                raise BundleError(
                    f"bundle {bundle_path} updates from release {name}, which {repo} does not have; "
                    "make a bundle with --from set to the device's version"
                )
            files = [m for n, m in members.items() if n.startswith(hop.path.rstrip("/") + "/")]
            if not any(m.name.endswith("/superblock") for m in files):
                raise BundleError(f"bundle {bundle_path} lacks the delta {hop.path}")
            with tempfile.TemporaryDirectory(prefix="fieldshift-bundle-", dir=_scratch_dir(repo)) as tmp:
                delta_dir = Path(tmp) / "delta"
                delta_dir.mkdir()
                for member in files:
                    target = delta_dir / member.name.rsplit("/", 1)[1]
                    handle = tar.extractfile(member)
                    if handle is None:
                        raise BundleError(f"cannot read {member.name} from bundle {bundle_path}")
                    with handle, open(target, "wb") as out:
                        shutil.copyfileobj(handle, out, 1024 * 1024)
                    if target.stat().st_size != member.size:
                        raise BundleError(f"{member.name} in bundle {bundle_path} is truncated")
                _apply_offline(repo, delta_dir)
            if not has_commit(repo, hop.to_commit):
                raise cat.CommitMismatch(
                    f"applying bundle {bundle_path} did not produce commit {hop.to_commit[:12]}…; refusing it"
                )
    return catalog


def _scratch_dir(repo: Path) -> str | None:
    """Unpack next to the repo (same filesystem, no tmpfs size surprises) when it has a tmp/ dir."""
    tmp = repo / "tmp"
    return os.fspath(tmp) if tmp.is_dir() else None
