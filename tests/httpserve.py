"""A static file server on 127.0.0.1 for tests and benchmarks, with an access log that counts bytes.

It serves a directory the way a plain web server or CDN serves a published release: ``GET`` and
``HEAD``, single byte ``Range`` requests (206/416, ``If-Range``), strong ``ETag`` with
``If-None-Match`` and ``Last-Modified`` with ``If-Modified-Since`` (304), HTTP/1.1 keep-alive. Every
response is recorded as an :class:`Access` (method, path, status, body bytes, header bytes), so a test
can assert which files a client fetched and how many bytes moved.

Faults for resume tests: :meth:`StaticServer.cut` makes the next request for a path drop the
connection after N body bytes; :meth:`StaticServer.fail` answers it with an HTTP error once.

Usage::

    with StaticServer(release_dir) as server:
        run(["ostree", "pull", ...])           # against server.url
        fetched = server.paths()               # ['/repo/summary', ...]
        moved = server.bytes_sent()            # body + header bytes of every response

Run ``python -m tests.httpserve DIR [PORT]`` to serve a directory by hand.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Access:
    """One answered request: what was asked, the status, and the bytes sent (body, headers)."""

    method: str
    path: str
    status: int
    body_bytes: int
    header_bytes: int
    range: str | None = None
    request_bytes: int = 0  # request line + request headers as received

    @property
    def total_bytes(self) -> int:
        """Response bytes (headers + body)."""
        return self.body_bytes + self.header_bytes

    @property
    def wire_bytes(self) -> int:
        """Both directions: request line and headers, response headers and body."""
        return self.request_bytes + self.body_bytes + self.header_bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the access log is structured (Access records), not text on stderr

    def flush_headers(self) -> None:
        buffered = getattr(self, "_headers_buffer", [])
        self._header_bytes = getattr(self, "_header_bytes", 0) + sum(len(b) for b in buffered)
        super().flush_headers()

    def do_HEAD(self) -> None:
        with self.server.owner._in_flight():
            self._serve(send_body=False)

    def do_GET(self) -> None:
        with self.server.owner._in_flight():
            self._serve(send_body=True)

    def _record(self, status: int, body: int, rng: str | None) -> None:
        path = urllib.parse.urlsplit(self.path).path
        request = len(self.raw_requestline)
        if getattr(self, "headers", None) is not None:
            request += sum(len(f"{k}: {v}\r\n".encode()) for k, v in self.headers.items()) + 2
        self.server.owner._append(
            Access(self.command, path, status, body, getattr(self, "_header_bytes", 0), rng, request)
        )
        self._header_bytes = 0

    def _plain(self, status: int, message: str = "") -> None:
        body = (message or HTTPStatus(status).phrase).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        sent = 0
        if self.command != "HEAD":
            self.wfile.write(body)
            sent = len(body)
        self._record(status, sent, self.headers.get("Range"))

    def _resolve(self) -> Path | None:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        root = self.server.owner.root
        target = (root / rel).resolve()
        if target != root and root not in target.parents:
            return None
        return target if target.is_file() else None

    def _serve(self, *, send_body: bool) -> None:
        owner = self.server.owner
        url_path = urllib.parse.urlsplit(self.path).path
        fault = owner._take_fault(url_path)
        if fault is not None and fault[0] == "fail":
            self._plain(fault[1])
            return
        target = self._resolve()
        if target is None:
            self._plain(404)
            return
        info = target.stat()
        etag = f'"{info.st_size:x}-{info.st_mtime_ns:x}"'
        last_modified = email.utils.formatdate(info.st_mtime, usegmt=True)
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        not_modified = False
        if inm is not None:
            not_modified = inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]
        elif ims is not None:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
                not_modified = int(info.st_mtime) <= int(since)
            except (TypeError, ValueError):
                not_modified = False
        if not_modified:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            self._record(304, 0, None)
            return
        size = info.st_size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng is not None and (if_range is None or if_range.strip() in (etag, last_modified)):
            match = _RANGE_RE.match(rng.strip())
            if match is None or (match.group(1) == "" and match.group(2) == ""):
                rng = None  # unsupported (e.g. multi-range): serve the whole file, as RFC 9110 allows
            else:
                first, last = match.group(1), match.group(2)
                if first == "":
                    start, end = max(0, size - int(last)), size - 1
                else:
                    start = int(first)
                    end = min(size - 1, int(last)) if last else size - 1
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self._record(416, 0, rng)
                    return
                status = 206
        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if send_body:
            limit = fault[1] if fault is not None and fault[0] == "cut" else None
            with open(target, "rb") as fh:
                fh.seek(start)
                remaining = length
                while remaining > 0:
                    want = min(_CHUNK, remaining)
                    if limit is not None:
                        want = min(want, limit - sent)
                        if want <= 0:
                            break
                    chunk = fh.read(want)
                    if not chunk:
                        break
                    try:
                        self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    sent += len(chunk)
                    remaining -= len(chunk)
            if limit is not None and sent < length:
                self.close_connection = True
                self._record(status, sent, rng)
                try:
                    self.wfile.flush()
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
        self._record(status, sent, rng)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: StaticServer


class StaticServer:
    """Serve ``root`` on 127.0.0.1 (an ephemeral port unless ``port``) in a background thread."""

    def __init__(self, root: str | os.PathLike[str], port: int = 0) -> None:
        self.root = Path(root).resolve()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._log: list[Access] = []
        self._faults: dict[str, list[tuple[str, int]]] = {}
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StaticServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="httpserve", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults -------------------------------------------------------------------------------
    def cut(self, path: str, after_bytes: int) -> None:
        """The next GET of URL ``path`` sends ``after_bytes`` body bytes, then drops the connection."""
        with self._lock:
            self._faults.setdefault(path, []).append(("cut", after_bytes))

    def fail(self, path: str, status: int = 503) -> None:
        """The next request for URL ``path`` is answered with HTTP ``status``."""
        with self._lock:
            self._faults.setdefault(path, []).append(("fail", status))

    def _take_fault(self, path: str) -> tuple[str, int] | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.pop(0) if queue else None

    # -- access log ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._idle.notify_all()

    def _append(self, access: Access) -> None:
        with self._lock:
            self._log.append(access)

    @property
    def log(self) -> list[Access]:
        """A copy of the access log, in order of completion.

        Waits (up to 5 s) for requests still being answered, so a client that has just read its
        response sees that response logged.
        """
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=5)
            return list(self._log)

    def clear(self) -> None:
        """Forget the access log (faults stay queued), after requests being answered are logged."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=5)
            self._log.clear()

    def paths(self) -> list[str]:
        return [a.path for a in self.log]

    def bytes_sent(self, *, prefix: str = "", headers: bool = True) -> int:
        """Bytes sent for requests whose path starts with ``prefix`` (body, plus headers unless told)."""
        return sum(a.total_bytes if headers else a.body_bytes for a in self.log if a.path.startswith(prefix))


def main(argv: list[str]) -> None:
    server = StaticServer(argv[0], int(argv[1]) if len(argv) > 1 else 0)
    print(f"serving {server.root} at {server.url}", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
