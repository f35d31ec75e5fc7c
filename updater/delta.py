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
import http.client
import logging
import os
import shutil
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from greenboot.errors import UserError
from greenboot.external import ToolError, run
from updater import catalog as cat
from updater.ostree import has_commit
from updater.transport import USER_AGENT

_CHUNK = 64 * 1024
_MAX_PARTS = 100_000
_REDIRECTS = 5

log = logging.getLogger("fieldshift.delta")


class DeltaFetchError(UserError):
    """The static delta could not be fetched or applied; what was downloaded is kept for a retry."""


class _Transient(Exception):
    """One transfer broke off (cut, stalled, too slow); the next attempt resumes it."""


@dataclass(frozen=True)
class FetchResult:
    """The commit now in the repo, and the delta bytes moved in this call (0 when already present)."""

    commit: str
    bytes_fetched: int
    delta_size: int


@dataclass(frozen=True)
class LinkLimits:
    """How long to wait for a link: ``timeout`` s to connect and for any single read; a transfer that
    moves under ``low_speed_limit`` bytes/s over ``low_speed_time`` s is dropped and resumed (0: off)."""

    timeout: float = 60.0
    low_speed_limit: int = 0
    low_speed_time: float = 0.0

    @property
    def read_timeout(self) -> float:
        """A read that waits longer than the low-speed window is already too slow: give up on it then."""
        if self.low_speed_limit > 0 and self.low_speed_time > 0:
            return min(self.timeout, self.low_speed_time)
        return self.timeout


def _b64(checksum: str) -> str:
    return base64.b64encode(bytes.fromhex(checksum)).decode("ascii").rstrip("=").replace("/", "_")


def delta_path(from_commit: str | None, to_commit: str) -> str:
    """Path of a static delta inside an ostree repo, e.g. ``deltas/nS/hvw1…-Y2b0…``.

    ostree's filesystem-safe base64 of the checksums ('/' becomes '_', no padding), split after two
    characters; mirrors ``_ostree_get_relative_static_delta_path`` (src/libostree/ostree-repo-static-delta-core.c).
    """
    name = _b64(to_commit) if from_commit is None else f"{_b64(from_commit)}-{_b64(to_commit)}"
    return f"deltas/{name[:2]}/{name[2:]}"


def _content_total(resp: http.client.HTTPResponse) -> int | None:
    if resp.status == 206:
        total = (resp.getheader("Content-Range") or "").rsplit("/", 1)[-1]
        return int(total) if total.isdigit() else None
    length = resp.getheader("Content-Length")
    return int(length) if length is not None and length.isdigit() else None


def _open(url: str, headers: dict[str, str], timeout: float) -> tuple[http.client.HTTPConnection,
                                                                        http.client.HTTPResponse]:
    """GET ``url`` (following a few redirects); the caller closes the connection."""
    for _ in range(_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DeltaFetchError(f"unsupported URL {url!r}")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            import ssl

            conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", target, headers={"User-Agent": USER_AGENT, **headers})
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        location = resp.getheader("Location")
        if resp.status in (301, 302, 303, 307, 308) and location:
            conn.close()
            url = urllib.parse.urljoin(url, location)
            continue
        return conn, resp
    raise DeltaFetchError(f"{url}: too many redirects")


def _fetch_file(url: str, dest: Path, *, budget: int, limits: LinkLimits, attempts: int,
                progress: Callable[[int], None] | None = None) -> tuple[int, bool]:
    """Download ``url`` into ``dest`` (resuming ``dest.partial``); returns (bytes moved, found).

    ``budget`` is how many bytes the whole delta may still take: a larger file is refused. ``attempts``
    bounds the transfers in a row that bring no new byte; one that does make progress and then breaks
    off is resumed without counting against it, since every byte it brought is kept.
    """
    if dest.exists():
        return 0, True
    partial = dest.with_name(dest.name + ".partial")
    moved = 0
    last_error = "no attempt"
    fruitless = 0
    while fruitless < max(1, attempts):
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        got = 0
        try:
            conn, resp = _open(url, headers, limits.timeout)
            try:
                if conn.sock is not None:
                    conn.sock.settimeout(limits.read_timeout)
                if resp.status == 404:
                    return moved, False
                if resp.status == 416 and have:
                    if _content_total(resp) == have:
                        os.replace(partial, dest)
                        return moved, True
                    partial.unlink()
                    continue
                if resp.status not in (200, 206):
                    raise DeltaFetchError(f"{url} answered HTTP {resp.status}")
                total = _content_total(resp)
                if total is not None and total > budget:
                    raise DeltaFetchError(
                        f"{url} is {total} bytes, more than the signed catalog says the delta holds"
                    )
                if resp.status == 200:
                    have = 0
                mark_t, mark_b = time.monotonic(), 0
                with open(partial, "ab" if resp.status == 206 else "wb") as out:
                    try:
                        while True:
                            chunk = resp.read(_CHUNK)
                            if not chunk:
                                break
                            got += len(chunk)
                            have += len(chunk)
                            if have > budget:
                                raise DeltaFetchError(
                                    f"{url} sends more than the signed catalog says the delta holds")
                            out.write(chunk)
                            if progress is not None:
                                progress(moved + got)
                            now = time.monotonic()
                            if limits.low_speed_limit > 0 and limits.low_speed_time > 0 and \
                                    now - mark_t >= limits.low_speed_time:
                                if got - mark_b < limits.low_speed_limit * (now - mark_t):
                                    raise _Transient(f"under {limits.low_speed_limit} bytes/s for "
                                                     f"{limits.low_speed_time:.0f} s")
                                mark_t, mark_b = now, got
                    finally:  # every byte that arrived is kept for the next attempt
                        out.flush()
                        os.fsync(out.fileno())
                if total is not None and have != total:
                    raise _Transient(f"ended after {have} of {total} bytes")
                os.replace(partial, dest)
                return moved + got, True
            finally:
                conn.close()
        except _Transient as err:
            last_error = f"{url} {err}"
        except (OSError, http.client.HTTPException) as err:
            last_error = f"{url}: {type(err).__name__}"
        moved += got
        fruitless = 0 if got else fruitless + 1
        log.warning("%s; resuming", last_error)
    raise DeltaFetchError(f"could not download the update ({last_error}, {attempts} attempts in a row "
                          "without progress); what arrived is kept and the next attempt resumes")


def _offset(progress: Callable[[int], None] | None, base: int) -> Callable[[int], None] | None:
    if progress is None:
        return None
    report = progress
    return lambda n: report(base + n)


def fetch_and_apply(
    repo_url: str,
    repo_path: str | os.PathLike[str],
    release: cat.Release,
    from_commit: str | None,
    *,
    cache_dir: str | os.PathLike[str],
    limits: LinkLimits | None = None,
    attempts: int = 5,
    progress: Callable[[int], None] | None = None,
) -> FetchResult:
    """Bring ``release``'s commit into ``repo_path`` with the delta from ``from_commit`` (None = scratch).

    ``repo_url`` is the release's ``…/repo`` URL; ``release`` comes from a verified catalog (its delta
    size bounds the download). Idempotent: returns at once when the repo already has the commit.
    ``progress`` receives the bytes moved so far in this call.
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
    link = limits or LinkLimits()
    base = repo_url.rstrip("/") + "/" + rel
    moved = 0
    names = ["superblock", *(str(i) for i in range(_MAX_PARTS))]
    for name in names:
        on_disk = sum(f.stat().st_size for f in workdir.iterdir() if not f.name.endswith(".partial"))
        if on_disk == delta.size:
            break
        got, found = _fetch_file(f"{base}/{name}", workdir / name, budget=delta.size - on_disk, limits=link,
                                 attempts=attempts, progress=_offset(progress, moved))
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
