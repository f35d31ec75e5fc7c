"""Whether an unhealthy system may reboot itself: greenboot's auto-reboot guards.

Mirrors ``usr/libexec/greenboot/redboot-auto-reboot``: never reboot when no boot counter is armed
(nothing would change: "manual intervention needed"), never loop when the fallback deployment is
unhealthy too, never reboot with a single boot entry. The unit that runs ``reboot-check`` carries
``SuccessAction=reboot``, so exit 0 means "reboot now" and the guards exit 1, 2 or 3 like upstream.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenboot import bootcount, report
from greenboot.healthcheck import Context

NO_COUNTER, FALLBACK_UNHEALTHY, SINGLE_ENTRY = 1, 2, 3


@dataclass(frozen=True)
class RebootDecision:
    """``reboot`` and, when not, why (``code`` is the exit status)."""

    reboot: bool
    code: int
    message: str

    def to_json(self) -> dict:
        return {"reboot": self.reboot, "code": self.code, "message": self.message}


def decide(ctx: Context) -> RebootDecision:
    state = bootcount.read(ctx.grubenv)
    rollback = report.last_rollback(ctx.layout.root)
    if rollback is not None and rollback.boot_id == ctx.boot_id() and not state.armed:
        return RebootDecision(
            False,
            FALLBACK_UNHEALTHY,
            "FALLBACK BOOT DETECTED but SYSTEM is still UNHEALTHY: the previous deployment fails its health "
            "checks too. Manual intervention needed.",
        )
    if not state.armed:
        return RebootDecision(
            False,
            NO_COUNTER,
            "SYSTEM is UNHEALTHY, but boot_counter is unset in grubenv, so a reboot would change nothing. "
            "Manual intervention needed.",
        )
    if state.fallback:
        return RebootDecision(
            False,
            FALLBACK_UNHEALTHY,
            "FALLBACK BOOT DETECTED but SYSTEM is still UNHEALTHY. Manual intervention needed.",
        )
    entries = list(ctx.layout.loader_entries.glob("*.conf")) if ctx.layout.loader_entries.is_dir() else []
    if len(entries) <= 1:
        return RebootDecision(
            False,
            SINGLE_ENTRY,
            f"SYSTEM is UNHEALTHY, but the boot loader entry count is {len(entries)}, so there is nothing to "
            "fall back to. Manual intervention needed.",
        )
    left = state.attempts_left()
    after = "the previous deployment boots next" if left == 0 else f"{left} attempt(s) left"
    return RebootDecision(True, 0, f"SYSTEM is UNHEALTHY. Rebooting ({after})...")
