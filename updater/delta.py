"""Fetch a release's static delta over plain HTTP, resuming after broken links, and apply it offline.

A published release offers each update as one static delta (``repo/deltas/…``: a superblock and
numbered parts) whose total size the signed catalog lists. This module downloads exactly those
files, resumes a file with a ``Range`` request after a dropped connection (and keeps what it has in
a cache directory across runs), never accepts more bytes than the catalog announced, and imports the
result with ``ostree static-delta apply-offline``, which checks every object against its checksum.

Why not plain ``ostree pull``: libostree from 2022.2 (ostreedev/ostree#2549) through at least 2022.7
(Debian 12) also fetches the new objects loose while it applies a delta (ostreedev/ostree#2680), so an
update costs delta + object pull; and a pull does not resume a half-downloaded delta part.

Runs on Python 3.9 (device code).
"""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import requests

from greenboot.errors import UserError
from greenboot.external import ToolError, run
from updater import catalog as cat

_CHUNK = 64 * 1024
_MAX_PARTS = 100_000


class DeltaFetchError(UserError):
    """The static delta could not be fetched or applied; what was downloaded is kept for a retry."""


@dataclass(frozen=True)
class FetchResult:
    """The commit now in the repo, and the delta bytes moved in this call (0 when already present)."""

    commit: str
    bytes_fetched: int
    delta_size: int


def _b64(checksum: str) -> str:
    return base64.b64encode(bytes.fromhex(checksum)).decode("ascii").rstrip("=").replace("/", "_")


def delta_path(from_commit: str | None, to_commit: str) -> str:
    """Path of a static delta inside an ostree repo, e.g. ``deltas/nS/hvw1…-Y2b0…``.

    ostree's filesystem-safe base64 of the checksums ('/' becomes '_', no padding), split after two
    characters; mirrors ``_ostree_get_relative_static_delta_path`` (src/libostree/ostree-repo-static-delta-core.c).
    """
    name = _b64(to_commit) if from_commit is None else f"{_b64(from_commit)}-{_b64(to_commit)}"
    return f"deltas/{name[:2]}/{name[2:]}"


def has_commit(repo_path: Path, checksum: str) -> bool:
    """True when the repo holds the whole commit (no interrupted-pull marker)."""
    repo = Path(repo_path)
    if (repo / "state" / f"{checksum}.commitpartial").exists():
        return False
    return (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").exists()


def _content_total(resp: requests.Response) -> int | None:
    if resp.status_code == 206:
        rng = resp.headers.get("Content-Range", "")
        total = rng.rsplit("/", 1)[-1]
        return int(total) if total.isdigit() else None
    length = resp.headers.get("Content-Length")
    return int(length) if length is not None and length.isdigit() else None


def _fetch_file(session: requests.Session, url: str, dest: Path, *, budget: int, timeout: float,
                attempts: int) -> tuple[int, bool]:
    """Download ``url`` into ``dest`` (resuming ``dest.partial``); returns (bytes moved, found).

    ``budget`` is how many bytes the whole delta may still take: a larger file is refused.
    """
    if dest.exists():
        return 0, True
    partial = dest.with_name(dest.name + ".partial")
    moved = 0
    last_error = "no attempt"
    for _ in range(max(1, attempts)):
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with session.get(url, headers=headers, timeout=timeout, stream=True) as resp:
                if resp.status_code == 404:
                    return moved, False
                if resp.status_code == 416 and have:
                    total = _content_total(resp)
                    if total == have:
                        os.replace(partial, dest)
                        return moved, True
                    partial.unlink()
                    continue
                if resp.status_code not in (200, 206):
                    raise DeltaFetchError(f"{url} answered HTTP {resp.status_code}")
                total = _content_total(resp)
                if total is not None and total > budget:
                    raise DeltaFetchError(
                        f"{url} is {total} bytes, more than the signed catalog says the delta holds"
                    )
                # Keep the bytes that did arrive when the link drops mid-body (urllib3 2 would
                # otherwise discard the last read and raise); the length check below catches it.
                resp.raw.enforce_content_length = False
                mode = "ab" if resp.status_code == 206 else "wb"
                if resp.status_code == 200:
                    have = 0
                with open(partial, mode) as out:
                    for chunk in resp.iter_content(_CHUNK):
                        moved += len(chunk)
                        have += len(chunk)
                        if have > budget:
                            raise DeltaFetchError(f"{url} sends more than the signed catalog says the delta holds")
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if total is not None and have != total:
                    last_error = f"{url} ended after {have} of {total} bytes"
                    continue
                os.replace(partial, dest)
                return moved, True
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
            last_error = f"{url}: {type(err).__name__}"
    raise DeltaFetchError(f"could not download the update after {attempts} attempts ({last_error}); "
                          "what arrived is kept and the next attempt resumes")


def fetch_and_apply(
    repo_url: str,
    repo_path: str | os.PathLike[str],
    release: cat.Release,
    from_commit: str | None,
    *,
    cache_dir: str | os.PathLike[str],
    session: requests.Session | None = None,
    timeout: float = 60.0,
    attempts: int = 5,
) -> FetchResult:
    """Bring ``release``'s commit into ``repo_path`` with the delta from ``from_commit`` (None = scratch).

    ``repo_url`` is the release's ``…/repo`` URL; ``release`` comes from a verified catalog (its delta
    size bounds the download). Idempotent: returns at once when the repo already has the commit.
    """
    repo = Path(repo_path)
    if has_commit(repo, release.commit):
        return FetchResult(release.commit, 0, 0)
    delta = release.delta_from(from_commit)
    if delta is None:
        src = "scratch" if from_commit is None else from_commit[:12]
        raise DeltaFetchError(f"release {release.version} has no static delta from {src}; pull it with ostree pull")
    if from_commit is not None and not has_commit(repo, from_commit):
        raise DeltaFetchError(f"{repo} does not have commit {from_commit[:12]}…, the start of the delta")
    rel = delta_path(from_commit, release.commit)
    workdir = Path(cache_dir) / rel.replace("/", "_")
    workdir.mkdir(parents=True, exist_ok=True)
    http = session or requests.Session()
    base = repo_url.rstrip("/") + "/" + rel
    moved = 0
    names = ["superblock", *(str(i) for i in range(_MAX_PARTS))]
    for name in names:
        on_disk = sum(f.stat().st_size for f in workdir.iterdir() if not f.name.endswith(".partial"))
        if on_disk == delta.size:
            break
        got, found = _fetch_file(http, f"{base}/{name}", workdir / name, budget=delta.size - on_disk,
                                 timeout=timeout, attempts=attempts)
        moved += got
        if not found:
            raise DeltaFetchError(f"{base}/{name} is missing on the server; the release is incomplete")
    try:
        run(["ostree", "static-delta", "apply-offline", f"--repo={repo}", os.fspath(workdir / "superblock")])
    except ToolError as err:
        shutil.rmtree(workdir, ignore_errors=True)  # a corrupt download must not be reused
        last = (err.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeltaFetchError(f"the downloaded update for {release.version} did not apply: {last}") from err
    if not has_commit(repo, release.commit):
        raise cat.CommitMismatch(f"applying the delta did not produce commit {release.commit[:12]}…; refusing it")
    shutil.rmtree(workdir, ignore_errors=True)
    return FetchResult(release.commit, moved, delta.size)
