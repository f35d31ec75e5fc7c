"""FleetLock client: ask a lock server for a reboot slot and give it back after a good boot.

Protocol as zincati speaks it (coreos/zincati ``docs/development/fleetlock/protocol.md``): POST JSON
``{"client_params": {"id": ..., "group": ...}}`` to ``<base>/v1/pre-reboot`` (lock) or
``<base>/v1/steady-state`` (unlock) with header ``fleet-lock-protocol: true``; 200 means granted, any
other status is a refusal, ideally with a ``{"kind", "value"}`` JSON error body.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenboot.errors import UserError
from updater.transport import HttpClient, HttpError


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

    def _post(self, endpoint: str, client: HttpClient | None = None) -> None:
        url = self.base_url.rstrip("/") + endpoint
        body = {"client_params": {"id": self.node_id, "group": self.group}}
        http = client or HttpClient(timeout=self.timeout)
        try:
            resp = http.post_json(url, body, headers={"fleet-lock-protocol": "true"})
        except HttpError as err:
            raise FleetLockError(f"FleetLock server {self.base_url} unreachable ({err.message})",
                                 "unreachable") from err
        if resp.status == 200:
            return
        kind, value = "http_" + str(resp.status), resp.reason or ""
        try:
            data = resp.json()
            if isinstance(data, dict):
                kind = str(data.get("kind") or kind)
                value = str(data.get("value") or value)
        except ValueError:
            pass
        raise FleetLockError(f"FleetLock {endpoint} refused by {self.base_url}: {value} ({kind})", kind)

    def lock(self, client: HttpClient | None = None) -> None:
        """Reserve a reboot slot (recursive: asking twice is fine)."""
        self._post("/v1/pre-reboot", client)

    def unlock(self, client: HttpClient | None = None) -> None:
        """Release any slot this node holds."""
        self._post("/v1/steady-state", client)
