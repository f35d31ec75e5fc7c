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

import requests

from greenboot.errors import UserError
from updater.catalog import CATALOG_NAME, MAX_CATALOG_BYTES, MAX_SIGNATURE_BYTES, SIGNATURE_NAME


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
    """Release directories over HTTP(S), tried in order; one keep-alive session for all requests."""

    def __init__(self, urls: Sequence[str], *, timeout: float, session: requests.Session | None = None) -> None:
        self.urls = list(urls)
        self.timeout = timeout
        self.session = session or requests.Session()
        # Keep requests small: the no-change check is budgeted in bytes on the wire.
        self.session.headers.clear()
        self.session.headers["User-Agent"] = "fieldshift-agent/1"

    def _get(self, url: str, limit: int, headers: dict[str, str]) -> requests.Response:
        resp = self.session.get(url, headers=headers, timeout=self.timeout, stream=True)
        if resp.status_code == 304:
            resp.close()
            return resp
        if resp.status_code != 200:
            resp.close()
            raise SourceError(f"{url} answered HTTP {resp.status_code}")
        body = b""
        for chunk in resp.iter_content(65536):
            body += chunk
            if len(body) > limit:
                resp.close()
                raise SourceError(f"{url} is larger than the {limit}-byte limit")
        resp._content = body  # noqa: SLF001 - the body read under a size limit
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
                if resp.status_code == 304:
                    return NotModified(base)
                sig = self._get(f"{root}/{SIGNATURE_NAME}", MAX_SIGNATURE_BYTES, {})
                return Fetched(resp.content, sig.content, base, resp.headers.get("ETag", ""),
                               resp.headers.get("Last-Modified", ""))
            except SourceError as err:
                errors.append(err.message)
            except requests.RequestException as err:
                errors.append(f"{root}: {type(err).__name__}")
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
