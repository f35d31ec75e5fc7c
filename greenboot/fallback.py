"""On a fallback boot (``boot_counter=-1``) make the rollback permanent, record it, and unset the counter.

Mirrors greenboot's ``greenboot-rpm-ostree-grub2-check-fallback``, made idempotent: the rollback is
only made when the default deployment is not the one GRUB booted, so a power cut between any two
steps and a second run never swaps the deployments back. How: ``rpm-ostree rollback`` or ``bootc
rollback`` on a live system that has them; otherwise plain ostree: ``ostree admin set-default`` where
it exists, else ``ostree admin undeploy 0`` (the failed deployment is removed, the booted one becomes
the default). Under ``--root`` only plain ostree is used, with ``--sysroot``.

Then: the rollback record (``rollback.json``) and a priority-3 journal message, the GRUB menu
regenerated when this system boots from a generated ``grub.cfg`` (Debian), and ``boot_counter`` unset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

from greenboot import bootcount
from greenboot.journal import ERR, INFO

if TYPE_CHECKING:
    from greenboot import ostree, report
    from greenboot.config import GreenbootConfig
    from greenboot.healthcheck import Context
    from greenboot.layout import Layout
# The rest of greenboot (ostree, reports, status, the health-check context) is imported only on a
# fallback boot: this check runs first on every boot, and on a normal one it reads grubenv and ends.


@dataclass(frozen=True)
class FallbackOutcome:
    """What ``fallback-check`` found and did."""

    fallback: bool
    method: str = "none"  # how the rollback was made permanent ("none" when nothing had to be done)
    record: Optional[report.RollbackRecord] = None

    def to_json(self) -> dict:
        record = self.record.to_json() if self.record else None
        return {"fallback": self.fallback, "method": self.method, "record": record}


def fallback_pending(layout: Layout, config: GreenbootConfig) -> bool:
    """Whether GRUB fell back on this boot (``boot_counter=-1``) and the rollback is still to be made."""
    return bootcount.read(layout.grubenv(config.grubenv or None)).fallback


def _previous_failures(ctx: Context) -> List[str]:
    from greenboot import report

    for rep in reversed(report.reports(ctx.layout.root)):
        if rep.boot_id != ctx.boot_id() and rep.verdict == "red":
            return rep.failed_required()
    return []


def _method(ctx: Context) -> str:
    """How this system makes a rollback permanent (decided before doing it, so it can be recorded first)."""
    from greenboot import ostree

    if ctx.layout.live:
        from greenboot import bootc, rpmostree

        if rpmostree.available():
            return "rpm-ostree"
        if bootc.available():
            return "bootc"
    return "ostree set-default" if ostree.supports_set_default() else "ostree undeploy"


def _make_permanent(ctx: Context, method: str, booted: Optional[ostree.Deployment]) -> None:
    from greenboot import ostree

    if method == "rpm-ostree":
        from greenboot import rpmostree

        rpmostree.rollback()
    elif method == "bootc":
        from greenboot import bootc

        bootc.rollback()
    elif method == "ostree set-default":
        ostree.set_default(ctx.layout, booted.index if booted is not None else 1)
    else:
        ostree.undeploy(ctx.layout, 0)


def check_fallback(ctx: Context) -> FallbackOutcome:
    grubenv = ctx.grubenv
    state = bootcount.read(grubenv)
    if not state.fallback:
        return FallbackOutcome(fallback=False)
    from greenboot import bootmount, ostree, report, status

    rep = ctx.current_report()  # before anything changes: it records boot_counter=-1
    deployments = ostree.status(ctx.layout)
    booted = ostree.booted(ctx.layout, deployments)
    needs = len(deployments) > 1 and (booted is None or booted.index != 0)
    existing = report.last_rollback(ctx.layout.root)
    method = "none"
    record = existing if existing is not None and existing.boot_id == ctx.boot_id() else None
    if needs:
        failed = deployments[0]
        running = booted if booted is not None else deployments[1]
        method = _method(ctx)
        # Record first: a power cut after the rollback but before the record would lose what failed.
        record = report.RollbackRecord(
            time=time.time(),
            boot_id=ctx.boot_id(),
            failed=failed.to_json(),
            running=running.to_json(),
            method=method,
            failed_checks=_previous_failures(ctx),
            max_boot_attempts=ctx.config.max_boot_attempts,
            message=(
                f"FALLBACK BOOT DETECTED! Deployment {failed.version or failed.checksum[:12]} failed "
                f"{ctx.config.max_boot_attempts} boot attempt(s); {running.version or running.checksum[:12]} "
                f"is the default again ({method})."
            ),
        )
        report.write_rollback(ctx.layout, record)
        _make_permanent(ctx, method, booted)
    elif record is None:
        current = booted if booted is not None else (deployments[0] if deployments else None)
        record = report.RollbackRecord(
            time=time.time(),
            boot_id=ctx.boot_id(),
            failed=None,
            running=current.to_json() if current else None,
            method="none",
            failed_checks=_previous_failures(ctx),
            max_boot_attempts=ctx.config.max_boot_attempts,
            message="FALLBACK BOOT DETECTED! The booted deployment was already the default.",
        )
        report.write_rollback(ctx.layout, record)
    ctx.journal.emit(ERR, record.message)
    if record.failed_checks:
        ctx.journal.emit(ERR, "Health checks that failed before the fallback: " + ", ".join(record.failed_checks))
    _refresh_menu(ctx)
    with bootmount.writable(ctx.layout, grubenv):
        bootcount.clear_counter(grubenv)
    ctx.journal.emit(INFO, "boot_counter unset; the fallback deployment is now the default")
    from dataclasses import replace

    report.save(ctx.layout, replace(rep, fallback=True), ctx.config.reports_keep)
    status.write_motd(ctx.layout, ctx.config)
    return FallbackOutcome(fallback=True, method=method, record=record)


def _refresh_menu(ctx: Context) -> None:
    """Rewrite a generated GRUB menu so entry 0 is the new default (Debian images)."""
    from greenboot import bootmount, grubmenu

    out = grubmenu.generated_menu(ctx.layout)
    if out is not None:
        with bootmount.writable(ctx.layout, out):
            grubmenu.write_menu(ctx.layout.root, out, boot_prefix=grubmenu.boot_prefix(ctx.layout))
