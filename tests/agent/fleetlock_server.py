"""A tiny FleetLock server on 127.0.0.1 (the protocol of coreos/zincati
``docs/development/fleetlock/protocol.md``): a counting semaphore with owned, recursive locks.

It checks what a real server checks (POST, ``fleet-lock-protocol: true``, the JSON body with
``client_params.id`` and ``client_params.group``) and records every request for the tests.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class LockState:
    slots: int = 1
    holders: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _answer(self, status: int, body: dict[str, str] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            record = {"path": self.path, "header": self.headers.get("fleet-lock-protocol"), "raw": raw}
            state.requests.append(record)
            if self.headers.get("fleet-lock-protocol") != "true":
                return self._answer(400, {"kind": "missing_header", "value": "fleet-lock-protocol header missing"})
            try:
                params = json.loads(raw)["client_params"]
                node, group = params["id"], params["group"]
            except (ValueError, KeyError, TypeError):
                return self._answer(400, {"kind": "bad_body", "value": "malformed client_params"})
            if not node or not re.match(r"^[a-zA-Z0-9.-]+$", group):
                return self._answer(400, {"kind": "bad_params", "value": "empty id or bad group"})
            record["id"], record["group"] = node, group
            if self.path.endswith("/v1/pre-reboot"):
                if node in state.holders or len(state.holders) < state.slots:
                    state.holders.add(node)
                    return self._answer(200)
                return self._answer(409, {"kind": "failed_lock_semaphore_full",
                                          "value": "semaphore currently full, all slots are locked already"})
            if self.path.endswith("/v1/steady-state"):
                state.holders.discard(node)
                return self._answer(200)
            return self._answer(404, {"kind": "not_found", "value": "unknown endpoint"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: LockState
    lock: threading.Lock


class FleetLockServer:
    def __init__(self, slots: int = 1) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = LockState(slots=slots)
        self._server.lock = threading.Lock()
        self.state = self._server.state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/base"

    def __enter__(self) -> FleetLockServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
