"""Where releases come from: HTTP(S) release directories with HTTP caching, or a directory on disk.

A release directory holds ``catalog.json``, ``catalog.json.sig`` and ``repo/`` (an ostree archive repo).
Over HTTP the catalog is fetched with ``If-None-Match`` / ``If-Modified-Since`` so an unchanged catalog
costs one small request and a 304; the signature is fetched only when the catalog changed. Several
base URLs are tried in order (mirrors). Trust is decided elsewhere (:func:`updater.catalog.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from greenboot.errors import UserError
from updater.catalog import CATALOG_NAME, MAX_CATALOG_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE_NAME
from updater.transport import HttpClient, HttpError, Response


class SourceError(UserError):
    """No source could deliver the catalog."""


@dataclass(frozen=True)
class Fetched:
    """A catalog as delivered (not yet trusted) and where its repo is."""

    data: bytes
    signature: bytes
    base: str              # the URL or directory that answered
    etag: str = ""
    last_modified: str = ""

    @property
    def repo_url(self) -> str:
        return self.base.rstrip("/") + "/repo" if "://" in self.base else str(Path(self.base) / "repo")


@dataclass(frozen=True)
class NotModified:
    """The server says the cached catalog is current."""

    base: str


class HttpSource:
    """Release directories over HTTP(S), tried in order, over one keep-alive client."""

    def __init__(self, urls: Sequence[str], *, timeout: float, client: HttpClient | None = None) -> None:
        self.urls = list(urls)
        self.client = client or HttpClient(timeout=timeout)

    def _get(self, url: str, limit: int, headers: dict[str, str]) -> Response:
        resp = self.client.get(url, headers=headers, limit=limit)
        if resp.status not in (200, 304):
            raise SourceError(f"{url} answered HTTP {resp.status}")
        return resp

    def fetch(self, etag: str = "", last_modified: str = "") -> Fetched | NotModified:
        errors = []
        for base in self.urls:
            root = base.rstrip("/")
            headers = {}
            if etag:
                headers["If-None-Match"] = etag
            if last_modified:
                headers["If-Modified-Since"] = last_modified
            try:
                resp = self._get(f"{root}/{CATALOG_NAME}", MAX_CATALOG_BYTES, headers)
                if resp.status == 304:
                    return NotModified(base)
                sig = self._get(f"{root}/{SIGNATURE_NAME}", MAX_SIGNATURE_BYTES, {})
                if sig.status != 200:
                    raise SourceError(f"{root}/{SIGNATURE_NAME} answered HTTP {sig.status}")
                return Fetched(resp.body, sig.body, base, resp.header("ETag"), resp.header("Last-Modified"))
            except (SourceError, HttpError) as err:
                errors.append(err.message)
        raise SourceError("release server unreachable: " + "; ".join(errors) if errors else "no release_url configured")


class DirSource:
    """A release directory on local disk (a mounted medium, or an unpacked offline bundle)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def fetch(self, etag: str = "", last_modified: str = "") -> Fetched:
        try:
            data = (self.path / CATALOG_NAME).read_bytes()
            sig = (self.path / SIGNATURE_NAME).read_bytes()
        except OSError as err:
            raise SourceError(f"{self.path} is not a release directory ({err.strerror}: {err.filename})") from err
        if not (self.path / "repo" / "config").is_file():
            raise SourceError(f"{self.path} has no ostree repo/ next to its catalog")
        return Fetched(data, sig, str(self.path))
