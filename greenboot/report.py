"""Persistent boot reports (one JSON file per boot, last N kept) and the "system was rolled back" record.

Files, under ``<root>/var/lib/fieldshift/greenboot/``:

- ``boots/<UTC time>-<boot id>.json``: one per boot: boot id, deployment, boot counter, verdict and
  every script of the check, green and red phases with status, exit code, duration and last output
  lines. The oldest beyond ``FIELDSHIFT_REPORTS_KEEP`` are removed.
- ``rollback.json``: written when a fallback boot was made permanent: which deployment failed, which
  one runs now, how the rollback was made, and the checks that failed. Read it with
  :func:`last_rollback`; other tools (the update agent) use it to deny-list the failed release.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from greenboot import atomic, bootcount
from greenboot.layout import Layout
from greenboot.scripts import PhaseResult

SCHEMA = 1


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass(frozen=True)
class BootReport:
    """Everything greenboot learnt about one boot."""

    boot_id: str
    started: float
    deployment: Optional[Dict[str, Any]] = None
    boot_counter: Optional[str] = None
    max_boot_attempts: int = 3
    verdict: str = "unknown"  # "green", "red", "unknown"
    phases: Dict[str, PhaseResult] = field(default_factory=dict)
    fallback: bool = False

    def with_phase(self, result: PhaseResult, verdict: Optional[str] = None) -> BootReport:
        phases = dict(self.phases)
        phases[result.phase] = result
        return replace(self, phases=phases, verdict=verdict or self.verdict)

    def attempts_left(self) -> Optional[int]:
        return bootcount.attempts_left(self.boot_counter)

    def failed_required(self) -> List[str]:
        check = self.phases.get("check")
        return [r.name for r in check.failed_required] if check else []

    def to_json(self) -> Dict[str, Any]:
        return {
            "schema": SCHEMA,
            "boot_id": self.boot_id,
            "started": _utc(self.started),
            "started_ts": self.started,
            "deployment": self.deployment,
            "boot_counter": self.boot_counter,
            "max_boot_attempts": self.max_boot_attempts,
            "verdict": self.verdict,
            "fallback": self.fallback,
            "phases": {name: phase.to_json() for name, phase in self.phases.items()},
        }

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> BootReport:
        return cls(
            boot_id=str(data["boot_id"]),
            started=float(data.get("started_ts", 0.0)),
            deployment=data.get("deployment"),
            boot_counter=data.get("boot_counter"),
            max_boot_attempts=int(data.get("max_boot_attempts", 3)),
            verdict=str(data.get("verdict", "unknown")),
            phases={k: PhaseResult.from_json(v) for k, v in (data.get("phases") or {}).items()},
            fallback=bool(data.get("fallback", False)),
        )


def _path_for(layout: Layout, report: BootReport) -> Path:
    for existing in layout.boots_dir.glob(f"*-{report.boot_id}.json"):
        return existing
    # Microseconds in the name keep several boots within one second in order (tests, fast reboots).
    micro = int((report.started % 1) * 1_000_000)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report.started)) + f".{micro:06d}Z"
    return layout.boots_dir / f"{stamp}-{report.boot_id}.json"


def save(layout: Layout, report: BootReport, keep: int = 10) -> Path:
    """Write (or replace) this boot's report atomically, then drop all but the newest ``keep``."""
    path = _path_for(layout, report)
    atomic.write_json(path, report.to_json())
    prune(layout, keep)
    return path


def prune(layout: Layout, keep: int) -> None:
    files = sorted(layout.boots_dir.glob("*.json"))
    for old in files[: max(len(files) - max(keep, 1), 0)]:
        old.unlink(missing_ok=True)


def _load(path: Path) -> Optional[BootReport]:
    try:
        return BootReport.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def reports(root: Union[Path, str] = "/") -> List[BootReport]:
    """All kept reports, oldest first (unreadable files are skipped)."""
    layout = Layout.at(root)
    found = [_load(p) for p in sorted(layout.boots_dir.glob("*.json"))]
    return sorted((r for r in found if r is not None), key=lambda r: r.started)


def for_boot(layout: Layout, boot_id: str) -> Optional[BootReport]:
    for path in layout.boots_dir.glob(f"*-{boot_id}.json"):
        return _load(path)
    return None


def latest(root: Union[Path, str] = "/") -> Optional[BootReport]:
    found = reports(root)
    return found[-1] if found else None


@dataclass(frozen=True)
class RollbackRecord:
    """The system fell back to the previous deployment and that was made permanent."""

    time: float
    boot_id: str
    failed: Optional[Dict[str, Any]]  # deployment that was given up
    running: Optional[Dict[str, Any]]  # deployment booted now (the new default)
    method: str  # "rpm-ostree", "bootc", "ostree set-default", "ostree undeploy", "none"
    failed_checks: List[str] = field(default_factory=list)
    max_boot_attempts: int = 3
    message: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {
            "schema": SCHEMA,
            "time": _utc(self.time),
            "time_ts": self.time,
            "boot_id": self.boot_id,
            "failed_deployment": self.failed,
            "running_deployment": self.running,
            "method": self.method,
            "failed_checks": list(self.failed_checks),
            "max_boot_attempts": self.max_boot_attempts,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> RollbackRecord:
        return cls(
            time=float(data.get("time_ts", 0.0)),
            boot_id=str(data.get("boot_id", "")),
            failed=data.get("failed_deployment"),
            running=data.get("running_deployment"),
            method=str(data.get("method", "")),
            failed_checks=[str(x) for x in data.get("failed_checks", [])],
            max_boot_attempts=int(data.get("max_boot_attempts", 3)),
            message=str(data.get("message", "")),
        )


def write_rollback(layout: Layout, record: RollbackRecord) -> Path:
    atomic.write_json(layout.rollback_record, record.to_json())
    return layout.rollback_record


def last_rollback(root: Union[Path, str] = "/") -> Optional[RollbackRecord]:
    """The last rollback record, or None when the system was never rolled back (or it is unreadable)."""
    path = Layout.at(root).rollback_record
    try:
        return RollbackRecord.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
