"""FleetLock client: ask a lock server for a reboot slot and give it back after a good boot.

Protocol as zincati speaks it (coreos/zincati ``docs/development/fleetlock/protocol.md``): POST JSON
``{"client_params": {"id": ..., "group": ...}}`` to ``<base>/v1/pre-reboot`` (lock) or
``<base>/v1/steady-state`` (unlock) with header ``fleet-lock-protocol: true``; 200 means granted, any
other status is a refusal, ideally with a ``{"kind", "value"}`` JSON error body.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from greenboot.errors import UserError


class FleetLockError(UserError):
    """The lock server refused or could not be reached."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FleetLock:
    """One client identity against one server."""

    base_url: str
    node_id: str
    group: str = "default"
    timeout: float = 15.0

    def _post(self, endpoint: str, session: requests.Session | None = None) -> None:
        url = self.base_url.rstrip("/") + endpoint
        body = {"client_params": {"id": self.node_id, "group": self.group}}
        http = session or requests
        try:
            resp = http.post(url, json=body, headers={"fleet-lock-protocol": "true"}, timeout=self.timeout)
        except requests.RequestException as err:
            raise FleetLockError(f"FleetLock server {self.base_url} unreachable ({type(err).__name__})",
                                 "unreachable") from err
        if resp.status_code == 200:
            return
        kind, value = "http_" + str(resp.status_code), resp.reason or ""
        try:
            data = resp.json()
            if isinstance(data, dict):
                kind = str(data.get("kind") or kind)
                value = str(data.get("value") or value)
        except ValueError:
            pass
        raise FleetLockError(f"FleetLock {endpoint} refused by {self.base_url}: {value} ({kind})", kind)

    def lock(self, session: requests.Session | None = None) -> None:
        """Reserve a reboot slot (recursive: asking twice is fine)."""
        self._post("/v1/pre-reboot", session)

    def unlock(self, session: requests.Session | None = None) -> None:
        """Release any slot this node holds."""
        self._post("/v1/steady-state", session)
