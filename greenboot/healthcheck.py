"""The three boot phases: ``check`` (verdict), ``green`` (mark success, run green.d), ``red`` (run red.d).

Each phase records its script results in this boot's report and refreshes the MOTD. ``check`` is
green when no required script failed and the run finished in time; ``green`` writes
``boot_success=1`` and unsets ``boot_counter`` (greenboot-grub2-set-success) before running green.d;
``red`` runs red.d and leaves the grubenv alone, so red.d scripts read the counter GRUB left (0 on
the last failing boot, as MicroShift's pre-rollback script expects).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from greenboot import bootcount, bootmount, report, status
from greenboot.config import GreenbootConfig
from greenboot.journal import EMERG, INFO, NOTICE, Journal
from greenboot.layout import Layout
from greenboot.scripts import PhaseResult, Runner


@dataclass
class Context:
    """One invocation: where (layout), with which settings, and where messages go."""

    layout: Layout
    config: GreenbootConfig
    journal: Journal = field(default_factory=Journal)
    env: Dict[str, str] = field(default_factory=dict)

    @property
    def grubenv(self) -> Path:
        return self.layout.grubenv(self.config.grubenv or None)

    def boot_id(self) -> str:
        try:
            return self.layout.boot_id_file.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def deployment(self) -> Optional[dict]:
        """The booted ostree deployment, when the kernel command line names one."""
        from greenboot import ostree

        if not ostree.booted_name(self.layout):
            return None
        try:
            dep = ostree.booted(self.layout)
        except Exception:  # noqa: BLE001 - the report must still be written without it
            return None
        return dep.to_json() if dep else None

    def current_report(self) -> report.BootReport:
        boot_id = self.boot_id()
        existing = report.for_boot(self.layout, boot_id)
        if existing is not None:
            return existing
        state = bootcount.read(self.grubenv)
        return report.BootReport(
            boot_id=boot_id,
            started=time.time(),
            deployment=self.deployment(),
            boot_counter=state.raw_counter,
            max_boot_attempts=self.config.max_boot_attempts,
            fallback=state.fallback,
        )

    def runner(self, keep_going: Optional[bool] = None) -> Runner:
        return Runner(self.layout, self.config, self.journal, dict(self.env), keep_going)

    def save(self, rep: report.BootReport) -> None:
        report.save(self.layout, rep, self.config.reports_keep)
        status.write_motd(self.layout, self.config)


def check(ctx: Context, keep_going: Optional[bool] = None) -> PhaseResult:
    """Run the health checks; the result's ``green`` is the boot verdict."""
    rep = ctx.current_report()
    ctx.journal.emit(INFO, "Running Required and Wanted Health Check Scripts...")
    result = ctx.runner(keep_going).run_phase("check")
    verdict = "green" if result.green else "red"
    ctx.save(rep.with_phase(result, verdict))
    if result.green:
        ctx.journal.emit(NOTICE, "Boot Status is GREEN - Health Check SUCCESS")
    else:
        names = ", ".join(f"{r.name} ({r.reason})" for r in result.failed_required)
        if result.run_timed_out:
            names = (names + "; " if names else "") + f"run exceeded {ctx.config.run_timeout_sec} s"
        ctx.journal.emit(EMERG, f"Boot Status is RED - Health Check FAILURE! Failed: {names}")
    return result


def green(ctx: Context) -> PhaseResult:
    """Mark the boot successful in grubenv, then run green.d."""
    grubenv = ctx.grubenv
    if grubenv.exists() or grubenv.parent.is_dir():
        with bootmount.writable(ctx.layout, grubenv):
            bootcount.mark_green(grubenv)
    ctx.journal.emit(NOTICE, "Boot Status is GREEN - Health Check SUCCESS")
    ctx.journal.emit(INFO, "Running Green Scripts...")
    result = ctx.runner().run_phase("green")
    ctx.save(ctx.current_report().with_phase(result, "green"))
    return result


def red(ctx: Context) -> PhaseResult:
    """Run red.d (the grubenv is left as GRUB wrote it)."""
    ctx.journal.emit(EMERG, "Boot Status is RED - Health Check FAILURE!")
    ctx.journal.emit(INFO, "Running Red Scripts...")
    result = ctx.runner().run_phase("red")
    ctx.save(ctx.current_report().with_phase(result, "red"))
    return result
