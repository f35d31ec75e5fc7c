"""A fault-injecting HTTP reverse proxy on 127.0.0.1: throttle, stall, reset or truncate responses.

It sits in front of a real server (``upstream``, e.g. :class:`tests.httpserve.StaticServer`) and
forwards ``GET``/``HEAD`` requests, streaming the upstream body to the client while applying the
first matching :class:`Fault`:

- ``throttle``: deliver at most ``rate`` bytes per second;
- ``stall``: after ``after_bytes``, send nothing for ``seconds`` (a client with a low-speed limit aborts);
- ``reset``: after ``after_bytes``, abort the connection with a TCP RST (``SO_LINGER`` 0);
- ``truncate``: after ``after_bytes``, close cleanly although ``Content-Length`` promised more.

Every response is logged as a :class:`Delivery` (path, status, bytes promised and delivered, whether
it completed, which fault hit), so a test can prove that a download finished and that no file was
delivered in full twice.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KINDS = ("throttle", "stall", "reset", "truncate")
# Content a resumed ostree pull must never fetch again: objects, and static delta parts.
CONTENT = r"/objects/|/deltas/.+/\d+$"
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


@dataclass
class Fault:
    """One fault for requests whose path matches ``pattern`` (a regex), applied ``times`` times (-1: always)."""

    kind: str
    pattern: str = ".*"
    times: int = 1
    after_bytes: int = 0
    seconds: float = 0.0
    rate: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; use one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Delivery:
    """One proxied response."""

    method: str
    path: str
    status: int
    promised: int | None
    delivered: int
    completed: bool
    fault: str = ""
    range: str | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._proxy(send_body=True)

    def do_HEAD(self) -> None:
        self._proxy(send_body=False)

    def _proxy(self, *, send_body: bool) -> None:
        owner = self.server.owner
        with owner._active_lock:
            owner._active += 1
        try:
            self._proxy_one(send_body=send_body)
        finally:
            with owner._active_lock:
                owner._active -= 1

    def _proxy_one(self, *, send_body: bool) -> None:
        owner = self.server.owner
        path = urllib.parse.urlsplit(self.path).path
        fault = owner._take(path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "host"}
        conn = http.client.HTTPConnection(owner.upstream_host, owner.upstream_port, timeout=30)
        try:
            conn.request(self.command, self.path, headers=headers)
            resp = conn.getresponse()
            length_text = resp.getheader("Content-Length")
            promised = int(length_text) if length_text is not None else None
            self.send_response(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in _HOP:
                    self.send_header(key, value)
            if promised is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            delivered, completed = 0, True
            if send_body and resp.status not in (204, 304):
                delivered, completed = self._stream(resp, fault)
            owner._record(Delivery(self.command, path, resp.status, promised, delivered,
                                   completed and (promised is None or delivered >= promised or not send_body),
                                   fault.kind if fault else "", self.headers.get("Range")))
        except OSError:
            owner._record(Delivery(self.command, path, 0, None, 0, False, fault.kind if fault else ""))
            self.close_connection = True
        finally:
            conn.close()

    def _stream(self, resp: http.client.HTTPResponse, fault: Fault | None) -> tuple[int, bool]:
        delivered = 0
        started = time.monotonic()
        hit = False
        while True:
            chunk = resp.read(4096 if fault and fault.kind == "throttle" else 65536)
            if not chunk:
                return delivered, True
            if fault and not hit and fault.kind in ("stall", "reset", "truncate") and \
                    delivered + len(chunk) > fault.after_bytes:
                cut = max(fault.after_bytes - delivered, 0)
                try:
                    self.wfile.write(chunk[:cut])
                    self.wfile.flush()
                except OSError:
                    return delivered, False
                delivered += cut
                chunk = chunk[cut:]
                hit = True
                if fault.kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return delivered, False
                if fault.kind == "truncate":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_WR)
                    return delivered, False
                time.sleep(fault.seconds)  # stall, then carry on if the client is still there
            try:
                self.wfile.write(chunk)
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return delivered, False
            delivered += len(chunk)
            if fault and fault.kind == "throttle" and fault.rate > 0:
                ahead = delivered / fault.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients vanish mid-response on purpose here; the Delivery log records it


class FaultProxy:
    """The proxy; use as a context manager. ``url`` replaces the upstream URL for clients."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.owner = self
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._log: list[Delivery] = []
        self._thread: threading.Thread | None = None
        self._active = 0
        self._active_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def add(self, fault: Fault) -> FaultProxy:
        with self._lock:
            self._faults.append(fault)
        return self

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times != 0 and re.search(fault.pattern, path):
                    if fault.times > 0:
                        fault.times -= 1
                    return Fault(fault.kind, fault.pattern, 1, fault.after_bytes, fault.seconds, fault.rate)
        return None

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self._log.append(delivery)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until no response is in progress (a stalled one finishes its sleep first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._active_lock:
                if self._active == 0:
                    return
            time.sleep(0.05)

    @property
    def log(self) -> list[Delivery]:
        with self._lock:
            return list(self._log)

    def faults_hit(self) -> list[Delivery]:
        return [d for d in self.log if d.fault]

    def completed_twice(self, pattern: str = CONTENT) -> list[str]:
        """Paths matching ``pattern`` (default: ostree objects and delta parts, not per-pull metadata
        like ``config`` or a delta superblock) whose full body was delivered more than once."""
        seen: dict[str, int] = {}
        for d in self.log:
            if d.method == "GET" and d.status == 200 and d.completed and d.delivered > 0 and re.search(pattern, d.path):
                seen[d.path] = seen.get(d.path, 0) + 1
        return sorted(p for p, n in seen.items() if n > 1)

    def bytes_delivered(self, pattern: str = ".*") -> int:
        return sum(d.delivered for d in self.log if re.search(pattern, d.path))

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
