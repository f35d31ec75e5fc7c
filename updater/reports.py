"""Reports to the outside: JSON events POSTed to a report URL (queued on disk while offline) and a
Prometheus textfile for node_exporter's textfile collector.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from greenboot import atomic
from updater.transport import HttpClient, HttpError

QUEUE_LIMIT = 500


@dataclass
class EventQueue:
    """Events as numbered JSON files in ``directory``; :meth:`flush` sends them oldest first."""

    directory: Path
    url: str
    node: str
    timeout: float = 10.0

    def put(self, event: str, fields: Mapping[str, Any]) -> None:
        if not self.url:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = sorted(self.directory.glob("*.json"))
        for stale in existing[: max(0, len(existing) - QUEUE_LIMIT + 1)]:
            stale.unlink(missing_ok=True)
        body = {"event": event, "node": self.node, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **fields}
        atomic.write_json(self.directory / f"{time.time_ns():020d}.json", body, mode=0o600)

    def pending(self) -> int:
        return len(list(self.directory.glob("*.json"))) if self.directory.is_dir() else 0

    def flush(self, client: HttpClient | None = None) -> int:
        """Send queued events in order; stop at the first failure (kept for next time). Returns sent count."""
        if not self.url or not self.directory.is_dir():
            return 0
        http = client or HttpClient(timeout=self.timeout)
        sent = 0
        for path in sorted(self.directory.glob("*.json")):
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            try:
                resp = http.post_json(self.url, body)
            except HttpError:
                break
            if resp.status >= 500 or resp.status == 429:
                break
            path.unlink(missing_ok=True)
            sent += 1
        return sent


PHASE_NUMBER = {"idle": 0, "selected": 1, "downloaded": 2, "protected": 3, "armed": 4, "staged": 5,
                "rebooting": 6, "confirming": 7}


def write_textfile(path: Path | None, metrics: Mapping[str, tuple[str, float, Mapping[str, str]]]) -> None:
    """Write ``name -> (help, value, labels)`` in the Prometheus text format, atomically."""
    if path is None:
        return
    lines = []
    for name, (help_text, value, labels) in sorted(metrics.items()):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        label = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{label}}} {value:g}" if label else f"{name} {value:g}")
    os.makedirs(path.parent, exist_ok=True)
    atomic.write_text(path, "\n".join(lines) + "\n")


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _timestamp(text: str) -> float:
    from datetime import datetime, timezone

    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


def state_metrics(state: Any) -> dict[str, tuple[str, float, Mapping[str, str]]]:
    """The agent's gauges for a :class:`updater.state.State`."""
    target = state.target
    return {
        "fieldshift_agent_phase": ("Update phase (0 idle .. 7 confirming)", PHASE_NUMBER.get(state.phase, -1),
                                   {"phase": state.phase}),
        "fieldshift_agent_failures": ("Consecutive failed attempts", state.failures, {}),
        "fieldshift_agent_denylisted_releases": ("Releases denylisted after a failed boot", len(state.denylist), {}),
        "fieldshift_agent_catalog_serial": ("Serial of the last verified catalog", state.catalog_serial or 0, {}),
        "fieldshift_agent_last_check_timestamp_seconds": ("Time of the last catalog check",
                                                          _timestamp(state.last_check), {}),
        "fieldshift_agent_update_available": ("1 while an update is being applied", 0 if target is None else 1,
                                              {"version": target.version if target else ""}),
    }
