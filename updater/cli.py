"""The ``fieldshift-agent`` command line: status, check, update, reboot, rollback, run, reconcile.

``run`` is the systemd service (Type=notify, watchdog); ``reconcile`` the early-boot unit. Every other
command either does its work itself (taking the agent lock) or, when the service holds the lock,
leaves a request in ``<state_dir>/requests/`` that the service acts on within a second.
argparse rather than click keeps the resident service small.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from greenboot import atomic
from greenboot.errors import UserError, guarded
from updater import config as config_mod
from updater.lock import AgentLock, AlreadyRunning
from updater.notify import Notifier

PROG = "fieldshift-agent"
REQUESTS = ("reboot", "update", "update-now")
# The loop wakes every second for queued CLI requests (a stat each) and re-evaluates the state
# machine every ADVANCE_EVERY seconds; advance() itself returns at once while nothing is due.
ADVANCE_EVERY = 10.0
# Phases that wait on the outside world are re-evaluated less often (a reboot window can be days away).
WAIT_EVERY = {"selected": 60.0, "staged": 60.0, "rebooting": 60.0}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Apply signed fieldshift releases to this device safely.")
    p.add_argument("--config", action="append", type=Path, metavar="FILE",
                   help="read this TOML file instead of the drop-in directories (repeatable, later wins)")
    p.add_argument("--debug", action="store_true", help="log external commands and show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("status", help="current and pending deployment, progress, policy, last result")
    s.add_argument("--json", action="store_true")
    c = sub.add_parser("check", help="fetch and verify the catalog; say what would be applied")
    c.add_argument("--json", action="store_true")
    u = sub.add_parser("update", help="check, download, protect data and stage now (reboot by policy)")
    u.add_argument("--now", action="store_true", help="also reboot right away, whatever the policy")
    u.add_argument("--from-bundle", type=Path, metavar="FILE", help="apply an offline bundle file")
    sub.add_parser("reboot", help="allow the pending reboot now (strategy manual) or perform it")
    sub.add_parser("rollback", help="cancel a pending update, or reboot into the previous deployment; "
                                    "the release left is denylisted on this device")
    sub.add_parser("run", help="the service: poll, apply, confirm (systemd Type=notify)")
    sub.add_parser("reconcile", help="early-boot step: confirm the update or make a rollback stick")
    return p


def _load(args: argparse.Namespace) -> config_mod.AgentConfig:
    return config_mod.load(args.config) if args.config else config_mod.load()


def _print_status(info: dict[str, Any]) -> None:
    booted = info.get("booted") or {}
    pending = info.get("pending") or {}
    target = info.get("target") or {}
    rows = [
        ("phase", info["phase"]),
        ("channel", info["channel"]),
        ("booted", f"{booted.get('version', '?')} ({booted.get('deployment', '?')[:12]})" if booted else "unknown"),
        ("pending", f"{pending.get('version')} ({pending.get('deployment', '')[:12]})" if pending else "none"),
        ("target", f"{target.get('version')} ({target.get('checksum', '')[:12]})" if target else "none"),
        ("last check", f"{info['last_check'] or 'never'}: {info['last_check_result'] or '-'}"),
        ("download", json.dumps(info["download"]) if info["download"] else "-"),
        ("reboot policy", info["reboot_strategy"] + (f", next slot {info['next_reboot_slot']}"
                                                      if info["next_reboot_slot"] else "")),
        ("last error", info["last_error"] or "-"),
        ("last result", json.dumps({k: v for k, v in info["last_result"].items() if k != "greenboot"})
         if info["last_result"] else "-"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _request(cfg: config_mod.AgentConfig, name: str) -> None:
    atomic.write_text(cfg.paths.state_dir / "requests" / name, f"{os.getpid()}\n", mode=0o600)
    print(f"{PROG}: the running agent will {name.replace('-', ' ')} shortly", file=sys.stderr)


def _take_requests(cfg: config_mod.AgentConfig) -> set[str]:
    found = set()
    for name in REQUESTS:
        path = cfg.paths.state_dir / "requests" / name
        if path.exists():
            path.unlink()
            found.add(name)
    return found


def _update(cfg: config_mod.AgentConfig, args: argparse.Namespace) -> int:
    from updater.agent import Agent

    agent = Agent(cfg, bundle_file=args.from_bundle)
    state = agent.advance(force=True, reboot_now=args.now)
    print(f"phase {state.phase}: {state.last_error or state.last_check_result or 'done'}")
    return 0 if not state.last_error or state.phase in ("staged", "rebooting") else 1


def _in_child(cfg: config_mod.AgentConfig, action: str, *, force: bool = False, reboot_now: bool = False,
              alive: Callable[[], bool] = lambda: True) -> int:
    """Run one agent step in a forked child and wait for it, calling ``alive`` about once a second
    (when it returns False the service is stopping: the step is sent SIGTERM).

    The resident service stays small: the catalog verification stack (cryptography and the agent
    proper) is imported only by the short-lived child, so memory used by a check is returned to the
    system when it ends (``bench/agent_idle.py`` measures both). The child shares the parent's lock
    file description, so it runs under the parent's lock. The service has no other thread, so the
    child starts with no lock held by anyone. A child (and whatever it runs, in its own process group)
    still running after ``step_timeout_seconds`` is killed: its work is checkpointed in the state file,
    so the next step picks it up (a hung step must not keep the service alive and idle for ever).
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, observed through its effects
        import gc

        gc.disable()  # a step is short-lived; its garbage goes with the process
        code = 0
        try:
            os.setpgid(0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if action == "reconcile" and _nothing_to_reconcile(cfg) is not None:
                os._exit(0)
            from updater.agent import Agent

            agent = Agent(cfg)
            if action == "reconcile":
                agent.reconcile()
            else:
                agent.advance(force=force, reboot_now=reboot_now)
        except UserError as err:
            print(f"{PROG}: {err.message}", file=sys.stderr)
            code = 1
        except BaseException as err:  # noqa: BLE001 - a step must never take the service down
            print(f"{PROG}: internal error in {action}: {type(err).__name__}: {err}", file=sys.stderr)
            code = 70
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also set here: no race with a kill before the child ran setpgid
    deadline = time.monotonic() + cfg.step_timeout_seconds
    delay = 0.005
    killed = False
    terminated = False
    while True:
        try:
            done, status, usage = os.wait4(pid, os.WNOHANG)
        except InterruptedError:
            continue
        if done:
            break
        if not killed and time.monotonic() >= deadline:
            print(f"{PROG}: {action} step still running after {cfg.step_timeout_seconds} s "
                  "(step_timeout_seconds): stopped, will be retried", file=sys.stderr)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            killed = True
        if not alive() and not terminated:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGTERM)
            terminated = True
        time.sleep(delay)
        delay = min(delay * 2, 1.0)  # short steps are reaped at once, long ones cost one wakeup a second
    _account(cfg, action, usage.ru_utime + usage.ru_stime)
    return os.waitstatus_to_exitcode(status)


def _nothing_to_reconcile(cfg: config_mod.AgentConfig) -> str | None:
    """The recorded phase when a boot left reconcile nothing to do (then the agent is not imported)."""
    from updater.state import StateStore, reconcile_needed

    state = StateStore(cfg.paths.state_dir).load()
    return None if reconcile_needed(state) else state.phase


def _account(cfg: config_mod.AgentConfig, action: str, cpu_seconds: float) -> None:
    """Keep the CPU cost of the service's steps in ``<state_dir>/service.json`` (for status and bench)."""
    path = cfg.paths.state_dir / "service.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data["steps"] = int(data.get("steps", 0)) + 1
    data["cpu_ms_total"] = round(float(data.get("cpu_ms_total", 0.0)) + cpu_seconds * 1000, 3)
    data["last_step"] = {"action": action, "cpu_ms": round(cpu_seconds * 1000, 3)}
    try:
        atomic.write_json(path, data, mode=0o600)
    except OSError:
        pass


def _preload() -> None:
    """Import, once in the service, every module a step needs except the catalog's verification stack
    (cryptography, ~8 MiB resident): forked step children then start in a few milliseconds."""
    import importlib

    for name in ("json", "tarfile", "datetime", "random", "zoneinfo", "http.client", "greenboot.bootcount",
                 "updater.quickcheck",
                 "greenboot.report", "greenboot.config", "updater.transport", "updater.journal", "updater.reports",
                 "updater.ostree", "updater.snapshots", "updater.schedule", "updater.rollout", "updater.fleetlock",
                 "updater.backends"):
        importlib.import_module(name)
    import gc

    gc.collect()
    gc.freeze()  # keep the collector off the inherited objects: fewer copy-on-write faults per fork


def _due(state: Any) -> bool:
    """Whether a step may have work now (read from the persisted state, no agent import needed)."""
    if state.phase != "idle" or not state.retry_after:
        return True
    from datetime import datetime, timezone

    try:
        when = datetime.strptime(state.retry_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return True
    return datetime.now(timezone.utc) >= when


class ConfigWatch:
    """The service's configuration and whether its files changed since it was read.

    The files' signature (path, mtime, size) is taken *before* they are read: a drop-in written while
    they are being read (or at any moment after) always shows up as a change, so the service reads it
    again. Taken after the read, an edit landing in between was never noticed: the service kept
    running on the configuration it had replaced (the VM tier saw a device keep its old release URL).
    """

    def __init__(self, explicit: Sequence[Path] | None) -> None:
        self.explicit = list(explicit) if explicit else None
        self.signature: tuple[tuple[str, int, int], ...] = ()

    def files(self) -> list[Path]:
        return list(self.explicit) if self.explicit else config_mod.dropin_files()

    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        sig = []
        for path in self.files():
            try:
                st = path.stat()
            except OSError:
                sig.append((str(path), -1, -1))
                continue
            sig.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(sig)

    def load(self) -> config_mod.AgentConfig:
        """Read the configuration now (raises :class:`UserError` when it is invalid)."""
        self.signature = self._signature()
        return config_mod.load(self.explicit) if self.explicit else config_mod.load()

    def changed(self) -> bool:
        return self._signature() != self.signature


def _serve(explicit: Sequence[Path] | None = None) -> int:
    """The service loop: reconcile, READY=1, then a step whenever due; watchdog pings throughout.

    The configuration is read again before a step when a drop-in was added, changed or removed, so
    ``/etc/fieldshift/agent.d`` edits (a new release URL, say) apply without restarting the service;
    an invalid edit is reported and the last good configuration kept.
    """
    from updater.state import StateStore

    watch = ConfigWatch(explicit)
    cfg = watch.load()
    _preload()
    notifier = Notifier()
    stop: list[int] = []  # the signal that asked the service to stop
    signal.signal(signal.SIGTERM, lambda signum, _frame: stop.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stop.append(signum))
    store = StateStore(cfg.paths.state_dir)
    last_ping = [0.0]

    def alive() -> bool:
        """Feed the watchdog (at a third of its period) while the loop, or the step it waits for, runs;
        False once the service is asked to stop."""
        if notifier.watchdog_seconds and time.monotonic() - last_ping[0] >= notifier.watchdog_seconds / 3:
            notifier.watchdog()
            last_ping[0] = time.monotonic()
        return not stop

    import random

    from updater.quickcheck import quick_poll
    from updater.transport import HttpClient

    client = HttpClient(timeout=float(cfg.http_timeout_seconds))
    rng = random.Random()
    _in_child(cfg, "reconcile", alive=alive)
    state = store.load()
    notifier.ready(f"phase {state.phase}")
    next_advance = 0.0
    full_checks = 0
    while not stop:
        requests_ = _take_requests(cfg)
        if requests_ or (time.monotonic() >= next_advance and _due(state)):
            if watch.changed():
                try:
                    cfg = watch.load()
                    client.close()
                    client = HttpClient(timeout=float(cfg.http_timeout_seconds))
                    print(f"{PROG}: configuration changed, reloaded", file=sys.stderr)
                except UserError as err:
                    print(f"{PROG}: configuration changed but not reloaded, keeping the last good one: "
                          f"{err.message}", file=sys.stderr)
            # The first poll of the process is always a full step, later ones may take the quick path.
            if requests_ or not full_checks or not quick_poll(cfg, store, client, rng):
                full_checks += 1
                _in_child(cfg, "advance", force=bool(requests_ & {"update", "update-now"}),
                          reboot_now=bool(requests_ & {"update-now", "reboot"}), alive=alive)
            state = store.load()
            notifier.status(f"phase {state.phase}" + (f": {state.last_error}" if state.last_error else ""))
            next_advance = time.monotonic() + WAIT_EVERY.get(state.phase, ADVANCE_EVERY)
        if alive():
            time.sleep(1.0)
    notifier.stopping()
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    sys.exit(guarded(lambda: _main(args_list), debug=debug, prog=PROG))


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    cfg = _load(args)
    if args.command == "status":
        from updater.agent import Agent

        info = Agent(cfg).status()
        if args.json:
            print(json.dumps(info, indent=2, sort_keys=True))
        else:
            _print_status(info)
        return 0
    if args.command == "check":
        from updater.agent import Agent

        found = Agent(cfg).preview()
        print(json.dumps(found, indent=2, sort_keys=True) if args.json else
              (f"{found['result']}: {found['version']}" if found["version"] else found["result"]))
        return 0
    lock = AgentLock(cfg.paths.state_dir)
    try:
        lock.acquire()
    except AlreadyRunning:
        if args.command == "reboot":
            _request(cfg, "reboot")
            return 0
        if args.command == "update" and not args.from_bundle:
            _request(cfg, "update-now" if args.now else "update")
            return 0
        raise
    try:
        if args.command == "run":
            return _serve(args.config)
        if args.command == "reconcile":
            phase = _nothing_to_reconcile(cfg)
            if phase is not None:
                print(f"phase {phase}")
                return 0
        from updater.agent import Agent

        agent = Agent(cfg)
        if args.command == "update":
            return _update(cfg, args)
        if args.command == "reboot":
            state = agent.store.load()
            if state.phase != "staged":
                raise UserError(f"nothing to reboot into (phase {state.phase})")
            state = agent.maybe_reboot(state, force=True)
            return 0 if state.phase == "rebooting" else 1
        if args.command == "rollback":
            state = agent.rollback()
            if state.last_result.get("result") == "cancelled":
                print(f"update {state.last_result.get('version')} cancelled and denylisted")
            else:
                print(f"rolling back to {state.last_result.get('version')}: phase {state.phase}")
            return 0
        if args.command == "reconcile":
            state = agent.reconcile()
            print(f"phase {state.phase}" + (f": {state.last_error}" if state.last_error else ""))
            return 0
    finally:
        lock.release()
    return 2


if __name__ == "__main__":
    main()
