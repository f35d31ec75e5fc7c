"""``fieldshift-greenboot``: greenboot's verbs (check, green, red, status) plus fallback, reboot and GRUB helpers.

``--root DIR`` runs against another tree (script dirs, config, grubenv, state, ostree sysroot all
under it); ``--json`` prints a machine-readable result. ``check`` exits 0 when the boot is green and
1 when it is red. Imports stay lazy so a boot pays only for what the verb uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional

from greenboot.errors import guarded

if TYPE_CHECKING:
    from greenboot.healthcheck import Context

PROG = "fieldshift-greenboot"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Boot health checks, boot counting and fallback (greenboot).")
    p.add_argument("--root", default="/", help="run against this tree instead of / (tests, fleet tooling)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    c = sub.add_parser("check", help="run required.d and wanted.d; exit 0 green, 1 red")
    c.add_argument("--keep-going", action="store_true", default=None,
                   help="run every check after a required failure (FIELDSHIFT_KEEP_GOING)")
    sub.add_parser("green", help="mark the boot successful in grubenv, then run green.d")
    sub.add_parser("red", help="run red.d (grubenv untouched)")
    s = sub.add_parser("status", help="show boot counter, last verdict, failed checks and rollbacks")
    s.add_argument("--motd", action="store_true", help="also rewrite /run/motd.d/boot-status")
    s.add_argument("--quiet", action="store_true", help="print nothing")
    sub.add_parser("fallback-check", help="on a fallback boot make the rollback permanent and unset the counter")
    sub.add_parser("reboot-check", help="exit 0 when an unhealthy system should reboot, else say why (1-3)")
    a = sub.add_parser("arm", help="set boot_counter (default GREENBOOT_MAX_BOOT_ATTEMPTS) and boot_success=0")
    a.add_argument("attempts", nargs="?", type=int)
    g = sub.add_parser("grub-menu", help="write grub.cfg from ostree's boot entries (GRUB without blscfg)")
    g.add_argument("--out", help="output file (default <root>/boot/grub/grub.cfg)")
    g.add_argument("--boot-prefix", default="auto",
                   help="prefix for kernel paths: '' when /boot is a partition, '/boot' when not; "
                        "auto (default): decided from the running system, '' under --root")
    g.add_argument("--timeout", type=int, default=1, help="menu timeout in seconds")
    m = sub.add_parser("microshift-check", help="the built-in MicroShift health check (40_microshift_running_check)")
    m.add_argument("--wait-sec", type=float, help="override the scaled MICROSHIFT_WAIT_TIMEOUT_SEC wait")
    m.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    i = sub.add_parser("install", help="install units, masks and the MicroShift check into an image tree")
    i.add_argument("--grub-menu", action="store_true", help="also the GRUB menu generator (Debian images)")
    i.add_argument("--microshift", action="store_true", help="also the MicroShift check script")
    return p


def _out(args: argparse.Namespace, data: Any, text: Optional[str] = None) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _context(args: argparse.Namespace) -> Context:
    from greenboot import config
    from greenboot.healthcheck import Context
    from greenboot.journal import Journal
    from greenboot.layout import Layout

    layout = Layout.at(args.root)
    # With --json, progress goes to stderr so stdout stays one JSON document.
    journal = Journal(stream=sys.stderr if args.json else None)
    return Context(layout, config.load(layout.root), journal)


def _run(args: argparse.Namespace) -> int:
    verb = args.verb
    if verb == "install":
        from greenboot import install

        written = install.install_into(Path(args.root), grub_menu=args.grub_menu, microshift=args.microshift)
        _out(args, {"installed": [str(p) for p in written]}, f"installed {len(written)} files under {args.root}")
        return 0
    if verb == "grub-menu":
        from greenboot import bootmount, grubmenu
        from greenboot.layout import Layout

        layout = Layout.at(args.root)
        out = Path(args.out) if args.out else layout.path(grubmenu.DEFAULT_OUT)
        with bootmount.writable(layout, out):
            prefix = grubmenu.boot_prefix(layout) if args.boot_prefix == "auto" else args.boot_prefix
            grubmenu.write_menu(layout.root, out, boot_prefix=prefix, timeout=args.timeout)
        _out(args, {"grub_cfg": str(out)}, f"wrote {out}")
        return 0
    if verb == "fallback-check":
        from greenboot import config, fallback
        from greenboot.layout import Layout

        layout = Layout.at(args.root)
        if not fallback.fallback_pending(layout, config.load(layout.root)):
            # Every boot runs this first: a normal boot pays for grubenv and config, nothing more.
            _out(args, fallback.FallbackOutcome(fallback=False).to_json(), "not a fallback boot")
            return 0
    ctx = _context(args)
    if verb == "check":
        from greenboot import healthcheck

        result = healthcheck.check(ctx, keep_going=args.keep_going)
        verdict = "green" if result.green else "red"
        _out(args, {"verdict": verdict, **result.to_json()})
        return 0 if result.green else 1
    if verb in ("green", "red"):
        from greenboot import healthcheck

        result = healthcheck.green(ctx) if verb == "green" else healthcheck.red(ctx)
        _out(args, result.to_json())
        return 0
    if verb == "status":
        from greenboot import status

        st = status.collect(ctx.layout, ctx.config)
        if args.motd:
            status.write_motd(ctx.layout, ctx.config)
        if not args.quiet:
            _out(args, st.to_json(), status.render(st))
        return 0
    if verb == "fallback-check":
        from greenboot import fallback

        outcome = fallback.check_fallback(ctx)
        _out(args, outcome.to_json(), None if outcome.fallback else "not a fallback boot")
        return 0
    if verb == "reboot-check":
        from greenboot import redboot
        from greenboot.journal import ALERT, EMERG

        decision = redboot.decide(ctx)
        ctx.journal.emit(ALERT if decision.reboot else EMERG, decision.message)
        _out(args, decision.to_json())
        return decision.code
    if verb == "arm":
        from greenboot import bootcount, bootmount

        attempts = args.attempts if args.attempts is not None else ctx.config.max_boot_attempts
        with bootmount.writable(ctx.layout, ctx.grubenv):
            bootcount.arm(ctx.grubenv, attempts)
        ctx.journal.emit(3, f"GRUB environment variables set for system upgrade. Max boot attempts is {attempts}")
        _out(args, {"grubenv": str(ctx.grubenv), "boot_counter": attempts})
        return 0
    if verb == "microshift-check":
        return _microshift(args, ctx)
    raise AssertionError(verb)


def _microshift(args: argparse.Namespace, ctx: Context) -> int:
    from greenboot import bootcount, microshift

    state = bootcount.read(ctx.grubenv)
    settings = microshift.settings_from_config(ctx.layout.root, ctx.config, state.raw_counter, args.wait_sec)
    settings.interval = args.interval
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    outcome = microshift.run_check(settings, say=say)
    if not outcome.ok:
        say(f"FAILURE: {outcome.message}")
    _out(args, {"ok": outcome.ok, "step": outcome.step, "message": outcome.message, "log": outcome.log})
    return 0 if outcome.ok else 1


def main(argv: Optional[List[str]] = None) -> None:
    args = _parser().parse_args(argv)
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG)
    try:
        code = guarded(lambda: _run(args), debug=args.debug, prog=PROG)
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # e.g. `status | head`: the reader left, nothing to report
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    main()
