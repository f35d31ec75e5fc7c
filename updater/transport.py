"""HTTP transport for the agent: keep-alive connections, timeouts, size limits, on the standard library.

The agent stays resident on small devices and its idle footprint is budgeted (< 30 MiB RSS,
``bench/agent_idle.py``); ``requests`` and urllib3 alone add about 16 MiB to the interpreter, so the
device side speaks HTTP/1.1 through ``http.client`` here (``ssl`` is imported only for an https URL).
Everything above talks to :class:`HttpClient`, so tests and other transports can stand in for it,
as python-tuf separates its fetcher from its updater.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Mapping

from greenboot.errors import UserError

USER_AGENT = "fieldshift-agent/1"


class HttpError(UserError):
    """The server could not be reached, or answered with more than we accept."""


@dataclass(frozen=True)
class Response:
    """A complete response: status, headers (lower-case names), body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class HttpClient:
    """One keep-alive connection per (scheme, host, port); a stale one is replaced once per request."""

    timeout: float = 30.0
    _conns: dict[tuple[str, str, int], http.client.HTTPConnection] = field(default_factory=dict)

    def _connection(self, scheme: str, host: str, port: int) -> http.client.HTTPConnection:
        key = (scheme, host, port)
        conn = self._conns.get(key)
        if conn is None:
            if scheme == "https":
                import ssl

                conn = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                   context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self._conns[key] = conn
        return conn

    def _drop(self, key: tuple[str, str, int]) -> None:
        conn = self._conns.pop(key, None)
        if conn is not None:
            conn.close()

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                body: bytes | None = None, limit: int = 1024 * 1024) -> Response:
        """Send one request and read the whole body (at most ``limit`` bytes, else :class:`HttpError`)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"unsupported URL {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        send = {"User-Agent": USER_AGENT, **(headers or {})}
        for attempt in (1, 2):
            reused = key in self._conns
            conn = self._connection(*key)
            try:
                conn.request(method, target, body=body, headers=send)
                resp = conn.getresponse()
                data = resp.read(limit + 1)
                if len(data) > limit:
                    self._drop(key)
                    raise HttpError(f"{url} sent more than the {limit}-byte limit")
                if resp.will_close:
                    self._drop(key)
                return Response(resp.status, resp.reason, {k.lower(): v for k, v in resp.getheaders()}, data)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as err:
                self._drop(key)
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: retry on a fresh one
                raise HttpError(f"{parts.hostname}:{port} closed the connection ({type(err).__name__})") from err
            except (OSError, http.client.HTTPException) as err:
                self._drop(key)
                raise HttpError(f"cannot reach {parts.hostname}:{port} ({type(err).__name__}: {err})") from err
        raise HttpError(f"cannot reach {parts.hostname}:{port}")  # pragma: no cover - loop always returns

    def get(self, url: str, *, headers: Mapping[str, str] | None = None, limit: int = 1024 * 1024) -> Response:
        return self.request("GET", url, headers=headers, limit=limit)

    def post_json(self, url: str, obj: Any, *, headers: Mapping[str, str] | None = None) -> Response:
        data = json.dumps(obj).encode()
        return self.request("POST", url, body=data,
                            headers={"Content-Type": "application/json", **(headers or {})}, limit=64 * 1024)

    def close(self) -> None:
        for key in list(self._conns):
            self._drop(key)
