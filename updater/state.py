"""The agent's persisted state machine: one JSON document, rewritten atomically after every step.

A step reads the state, does its (idempotent) work and records the next phase; a crash or power cut
at any instant leaves either the previous phase or the next one on disk, and re-running the agent
resumes from there. Phases, in order::

    idle -> selected -> downloaded -> protected -> armed -> staged -> rebooting -> confirming -> idle
                                                                   \\-> (fallback) rolled back -> idle
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from greenboot import atomic
from greenboot.errors import UserError

STATE_FILE = "state.json"
VERSION = 1

IDLE = "idle"
SELECTED = "selected"
DOWNLOADED = "downloaded"
PROTECTED = "protected"
ARMED = "armed"
STAGED = "staged"
REBOOTING = "rebooting"
CONFIRMING = "confirming"
PHASES = (IDLE, SELECTED, DOWNLOADED, PROTECTED, ARMED, STAGED, REBOOTING, CONFIRMING)
# While one of these phases is recorded, work that must not be interrupted by a reboot may be in flight.
IN_FLIGHT = (SELECTED, DOWNLOADED, PROTECTED, ARMED)
# Phases in which a boot may have changed something the agent must act on (confirm, roll back, stage again).
AFTER_BOOT = (STAGED, REBOOTING, CONFIRMING)


class StateError(UserError):
    """The state file is unreadable or from an unknown version."""


@dataclass(frozen=True)
class Target:
    """The release being applied, bound to the verified catalog it came from."""

    version: str
    checksum: str
    channel: str
    catalog_serial: int


@dataclass(frozen=True)
class State:
    """Everything the agent must remember across restarts and reboots."""

    phase: str = IDLE
    target: Target | None = None
    from_deployment: str = ""          # "<checksum>.<serial>" booted when the update started
    from_version: str = ""
    staged_deployment: str = ""        # "<checksum>.<serial>" of the staged target
    snapshot: str = ""                 # snapshot id (from_deployment) protecting data for a rollback
    denylist: tuple[str, ...] = ()     # release checksums that failed on this device
    catalog_serial: int | None = None  # highest verified catalog serial (rollback protection)
    etag: str = ""
    last_modified: str = ""
    last_check: str = ""               # ISO time of the last check attempt
    last_check_result: str = ""
    last_error: str = ""
    failures: int = 0                  # consecutive failed attempts (drives the backoff)
    retry_after: str = ""              # ISO time before which no new attempt is made
    progress: dict[str, Any] = field(default_factory=dict)
    last_result: dict[str, Any] = field(default_factory=dict)
    fleet_lock_held: bool = False
    reboot_boot_id: str = ""           # boot id of the boot that requested the reboot
    restore_snapshot: str = ""         # manual rollback: snapshot to restore when the target boots
    stable_until: str = ""             # until then an unchanged catalog (HTTP 304) cannot change the choice

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["denylist"] = list(self.denylist)
        data["version"] = VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        if data.get("version") != VERSION:
            raise StateError(f"agent state has version {data.get('version')!r}, expected {VERSION}; "
                             "move the state file aside to start afresh")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("target"):
            values["target"] = Target(**values["target"])
        values["denylist"] = tuple(values.get("denylist", ()))
        if values.get("phase", IDLE) not in PHASES:
            raise StateError(f"agent state has unknown phase {values.get('phase')!r}")
        return cls(**values)

    def update(self, **changes: Any) -> State:
        return replace(self, **changes)


class StateStore:
    """Reads and atomically writes ``<state_dir>/state.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE

    def load(self) -> State:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return State()
        try:
            return State.from_json(json.loads(raw))
        except (ValueError, TypeError) as err:
            raise StateError(f"{self.path}: agent state is corrupt ({err}); move it aside to start afresh") from err

    def save(self, state: State) -> State:
        """Persist ``state`` (skipped when the file already says exactly that: no flash wear while waiting)."""
        if state.phase != IDLE and state.stable_until:
            state = state.update(stable_until="")  # only an idle device's choice can be "stable"
        data = (json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n").encode()
        try:
            same = self.path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            atomic.write_bytes(self.path, data, mode=0o600)
        _stop_point(state.phase)
        return state


def _stop_point(phase: str) -> None:
    """Crash-test hook: with FIELDSHIFT_AGENT_STOP_AT=<phase> the process stops itself right after
    that phase is durable, so a test can SIGKILL it at an exact step boundary."""
    if os.environ.get("FIELDSHIFT_AGENT_STOP_AT") == phase:
        os.kill(os.getpid(), signal.SIGSTOP)


def reconcile_needed(state: State) -> bool:
    """Whether :meth:`updater.agent.Agent.reconcile` has anything to look at after a boot. When not, the
    early-boot unit and the service's first step end without importing the agent (seconds on a slow
    core, on every boot)."""
    return state.target is not None and state.phase in AFTER_BOOT
