"""The boot status summary: counter, last verdict, failed checks, rollback, warnings; and the MOTD made from it.

``fieldshift-greenboot status [--json]`` prints it; every verb that changes the picture rewrites
``/run/motd.d/boot-status`` (the file greenboot's MOTD generator writes) so a login shows the verdict
and how many boot attempts are left.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from greenboot import atomic, bootcount, report
from greenboot.config import GreenbootConfig
from greenboot.layout import Layout

TIMER = "grub-boot-success.timer"


@dataclass(frozen=True)
class Status:
    """What ``status`` shows."""

    grubenv: str
    boot_counter: Optional[str]
    boot_success: Optional[str]
    max_boot_attempts: int
    latest: Optional[report.BootReport]
    rollback: Optional[report.RollbackRecord]
    warnings: List[str] = field(default_factory=list)
    history: List[report.BootReport] = field(default_factory=list)  # kept boot reports, oldest first

    @property
    def attempts_left(self) -> Optional[int]:
        return bootcount.attempts_left(self.boot_counter)

    @property
    def verdict(self) -> str:
        return self.latest.verdict if self.latest else "unknown"

    def to_json(self) -> Dict[str, Any]:
        return {
            "grubenv": self.grubenv,
            "boot_counter": self.boot_counter,
            "boot_success": self.boot_success,
            "attempts_left": self.attempts_left,
            "max_boot_attempts": self.max_boot_attempts,
            "verdict": self.verdict,
            "latest_boot": self.latest.to_json() if self.latest else None,
            "rollback": self.rollback.to_json() if self.rollback else None,
            "warnings": list(self.warnings),
            "boots": [_summary(r) for r in self.history],
        }


def _summary(rep: report.BootReport) -> Dict[str, Any]:
    return {
        "boot_id": rep.boot_id,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rep.started)),
        "version": (rep.deployment or {}).get("version"),
        "boot_counter": rep.boot_counter,
        "verdict": rep.verdict,
        "fallback": rep.fallback,
        "failed_required": rep.failed_required(),
    }


def boot_success_timer_enabled(layout: Layout) -> bool:
    """True when GNOME/Fedora's ``grub-boot-success.timer`` user unit is installed, enabled and not masked.

    That timer marks any boot with a 2-minute user session as successful and so defeats boot counting.
    """
    installed = [layout.system_path(f"{d}/{TIMER}") for d in ("usr/lib/systemd/user", "etc/systemd/user")]
    if not any(p.exists() or p.is_symlink() for p in installed):
        return False
    for masked in (layout.system_path(f"etc/systemd/user/{TIMER}"), layout.path(f"run/systemd/user/{TIMER}")):
        if masked.is_symlink() and os.readlink(masked) == "/dev/null":
            return False
    wants = [
        layout.system_path(f"{d}/timers.target.wants/{TIMER}")
        for d in ("usr/lib/systemd/user", "etc/systemd/user")
    ]
    return any(p.exists() or p.is_symlink() for p in wants)


def collect(layout: Layout, config: GreenbootConfig) -> Status:
    grubenv = layout.grubenv(config.grubenv or None)
    state = bootcount.read(grubenv)
    warnings = list(config.warnings)
    if boot_success_timer_enabled(layout):
        warnings.append(
            f"{TIMER} is enabled: it marks any boot with a 2-minute login as successful and defeats boot "
            f"counting; mask it (systemctl --global mask {TIMER})"
        )
    if not grubenv.exists():
        warnings.append(f"no grubenv at {grubenv}: boot counting is not active")
    history = report.reports(layout.root)
    return Status(
        grubenv=str(grubenv),
        boot_counter=state.raw_counter,
        boot_success=state.success,
        max_boot_attempts=config.max_boot_attempts,
        latest=history[-1] if history else None,
        rollback=report.last_rollback(layout.root),
        warnings=warnings,
        history=history,
    )


def _dep(dep: Optional[Dict[str, Any]]) -> str:
    if not dep:
        return "unknown deployment"
    version = dep.get("version") or "?"
    return f"{version} ({str(dep.get('checksum', ''))[:12]})"


def render(status: Status, *, verbose: bool = True) -> str:
    """Human text for ``status`` and the MOTD."""
    lines = []
    latest = status.latest
    verdict = status.verdict.upper()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(latest.started)) if latest else "never"
    lines.append(f"Boot status: {verdict} (checked {when})")
    if latest and latest.deployment:
        lines.append(f"Deployment: {_dep(latest.deployment)}")
    left = status.attempts_left
    if status.boot_counter == "-1":
        lines.append("Boot counter: -1 (fallback boot: the previous deployment was booted)")
    elif left is not None:
        lines.append(f"Boot attempts left: {left} of {status.max_boot_attempts}")
    elif verbose:
        lines.append("Boot counter: not armed")
    if latest:
        check = latest.phases.get("check")
        if check:
            for r in check.failed:
                lines.append(f"  {r.kind} check {r.name}: {r.status} ({r.reason or r.status})")
    rb = status.rollback
    if rb and (verbose or (latest is not None and rb.boot_id == latest.boot_id)):
        when_rb = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(rb.time))
        failed = ", ".join(rb.failed_checks) or "unknown checks"
        lines.append(
            f"ROLLED BACK {when_rb}: {_dep(rb.failed)} failed {rb.max_boot_attempts} boot(s) ({failed}); "
            f"now running {_dep(rb.running)}"
        )
    for w in status.warnings:
        lines.append(f"WARNING: {w}")
    if verbose and len(status.history) > 1:
        lines.append(f"Last {len(status.history)} boots:")
        for rep in reversed(status.history):
            s = _summary(rep)
            failed = f" ({', '.join(s['failed_required'])})" if s["failed_required"] else ""
            counter = "-" if s["boot_counter"] is None else s["boot_counter"]
            lines.append(
                f"  {s['started']}  {s['version'] or '?':<12} counter={counter:<3} "
                f"{s['verdict']}{' fallback' if s['fallback'] else ''}{failed}"
            )
    return "\n".join(lines) + "\n"


def write_motd(layout: Layout, config: GreenbootConfig) -> Path:
    """Rewrite ``<root>/run/motd.d/boot-status`` from the current state."""
    text = render(collect(layout, config), verbose=False)
    atomic.write_text(layout.motd, text)
    return layout.motd
