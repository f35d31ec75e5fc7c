"""Find and run greenboot scripts: directory order, C-locale name order, bash for ``*.sh``, timeouts.

Mirrors bash greenboot (``usr/libexec/greenboot/greenboot``): the ``check`` phase runs
``/usr/lib/greenboot/check/required.d``, ``/usr/lib/greenboot/check/wanted.d``, then the same two under
``/etc/greenboot``; ``green`` and ``red`` run ``green.d``/``red.d`` from both trees. Inside a directory
scripts run in byte (C-locale) order of their names. ``*.sh`` files run with ``bash`` whether or not
they are executable; other executable files are exec'd; anything else is ignored. Names listed in
``DISABLED_HEALTHCHECKS`` are skipped.

Beyond greenboot: a timeout per script and for the whole run (a hung script is killed with its whole
process group and counts as a failure), optional keep-going after a required failure, and per-script
results (exit code, duration, last lines of output) for the boot report.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from greenboot.config import GreenbootConfig
from greenboot.journal import ERR, INFO, NOTICE, WARNING, Journal
from greenboot.layout import Layout

PASSED, FAILED, TIMEOUT, SKIPPED, DISABLED = "passed", "failed", "timeout", "skipped", "disabled"
KILL_GRACE_SEC = 3.0


@dataclass(frozen=True)
class Script:
    """One script to run: where it is and whether its failure makes the boot red."""

    path: Path
    kind: str  # "required", "wanted", "green", "red"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def required(self) -> bool:
        return self.kind == "required"

    def argv(self) -> List[str]:
        return ["bash", str(self.path)] if self.path.name.endswith(".sh") else [str(self.path)]


@dataclass(frozen=True)
class ScriptResult:
    """What running (or not running) one script gave."""

    name: str
    path: str
    kind: str
    status: str
    exit_code: Optional[int] = None
    duration: float = 0.0
    output: Tuple[str, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (PASSED, DISABLED, SKIPPED)

    def to_json(self) -> Dict[str, object]:
        return {
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "exit_code": self.exit_code,
            "duration": round(self.duration, 3),
            "output": list(self.output),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScriptResult:
        exit_code = data.get("exit_code")
        duration = data.get("duration", 0.0)
        return cls(
            name=str(data["name"]),
            path=str(data.get("path", "")),
            kind=str(data.get("kind", "")),
            status=str(data["status"]),
            exit_code=int(exit_code) if isinstance(exit_code, int) else None,
            duration=float(duration) if isinstance(duration, (int, float)) else 0.0,
            output=tuple(str(x) for x in data.get("output", []) or []),
            reason=str(data.get("reason", "")),
        )


@dataclass(frozen=True)
class PhaseResult:
    """All results of one phase (check, green or red) in run order."""

    phase: str
    results: Tuple[ScriptResult, ...]
    started: float
    duration: float
    warnings: Tuple[str, ...] = ()
    run_timed_out: bool = False

    @property
    def failed_required(self) -> Tuple[ScriptResult, ...]:
        return tuple(r for r in self.results if r.kind == "required" and not r.ok)

    @property
    def failed(self) -> Tuple[ScriptResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def green(self) -> bool:
        """The check verdict: no required failure and the run finished in time."""
        return not self.failed_required and not self.run_timed_out

    def to_json(self) -> Dict[str, object]:
        return {
            "phase": self.phase,
            "started": self.started,
            "duration": round(self.duration, 3),
            "run_timed_out": self.run_timed_out,
            "warnings": list(self.warnings),
            "scripts": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PhaseResult:
        scripts = data.get("scripts", []) or []
        return cls(
            phase=str(data.get("phase", "")),
            results=tuple(ScriptResult.from_json(s) for s in scripts),
            started=float(data.get("started", 0.0)),
            duration=float(data.get("duration", 0.0)),
            warnings=tuple(str(w) for w in data.get("warnings", []) or []),
            run_timed_out=bool(data.get("run_timed_out", False)),
        )


def _c_sorted(paths: Sequence[Path]) -> List[Path]:
    return sorted(paths, key=lambda p: os.fsencode(p.name))


def _runnable(path: Path) -> bool:
    if not path.is_file():
        return False
    return path.name.endswith(".sh") or os.access(path, os.X_OK)


def scripts_in(directory: Path, kind: str) -> List[Script]:
    """The scripts of one directory in C-locale order (missing directory: none)."""
    try:
        entries = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Script(p, kind) for p in _c_sorted(entries) if _runnable(p)]


def discover(layout: Layout, phase: str) -> List[Script]:
    """Scripts of ``phase`` ("check", "green", "red") in bash greenboot's order."""
    found: List[Script] = []
    if phase == "check":
        system = layout.system
        for base in (system / "usr/lib/greenboot/check", system / "etc/greenboot/check"):
            found += scripts_in(base / "required.d", "required")
            found += scripts_in(base / "wanted.d", "wanted")
        return found
    if phase in ("green", "red"):
        for directory in layout.script_dirs(f"{phase}.d"):
            found += scripts_in(directory, phase)
        return found
    raise ValueError(f"unknown phase {phase!r}")


@dataclass
class Runner:
    """Runs the scripts of a phase with the config's timeouts; ``env`` is added for every script."""

    layout: Layout
    config: GreenbootConfig
    journal: Journal = field(default_factory=Journal)
    env: Dict[str, str] = field(default_factory=dict)
    keep_going: Optional[bool] = None

    def script_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.env)
        env.update(
            {
                "FIELDSHIFT_GREENBOOT_ROOT": str(self.layout.root),
                "FIELDSHIFT_GRUBENV": str(self.layout.grubenv(self.config.grubenv or None)),
            }
        )
        env.update(self.env)
        return env

    def run_phase(self, phase: str) -> PhaseResult:
        started = time.time()
        t0 = time.monotonic()
        scripts = discover(self.layout, phase)
        disabled = set(self.config.disabled_healthchecks) if phase == "check" else set()
        seen_disabled = set()
        keep_going = self.config.keep_going if self.keep_going is None else self.keep_going
        strict = phase == "check"
        run_deadline = t0 + self.config.run_timeout_sec if self.config.run_timeout_sec > 0 else None
        env = self.script_env()
        results: List[ScriptResult] = []
        stop_reason = ""
        run_timed_out = False
        for script in scripts:
            if script.name in disabled:
                seen_disabled.add(script.name)
                self.journal.emit(INFO, f"'{script.name}' was skipped, as specified in config")
                results.append(ScriptResult(script.name, str(script.path), script.kind, DISABLED,
                                            reason="listed in DISABLED_HEALTHCHECKS"))
                continue
            if stop_reason:
                results.append(ScriptResult(script.name, str(script.path), script.kind, SKIPPED, reason=stop_reason))
                continue
            result = self.run_script(script, env, run_deadline)
            results.append(result)
            if result.status == TIMEOUT and run_deadline is not None and time.monotonic() >= run_deadline:
                run_timed_out = True
                stop_reason = f"not run: the whole {phase} run exceeded {self.config.run_timeout_sec} s"
            elif strict and script.required and not result.ok and not keep_going:
                stop_reason = f"not run: required check {script.name} failed (FIELDSHIFT_KEEP_GOING=true runs all)"
        warnings = list(self.config.warnings) if phase == "check" else []
        for name in self.config.disabled_healthchecks if phase == "check" else ():
            if name not in seen_disabled:
                warnings.append(f"{name} was not found and may be misspelled")
        for text in warnings:
            self.journal.emit(WARNING, f"WARNING: {text}")
        return PhaseResult(phase, tuple(results), started, time.monotonic() - t0, tuple(warnings), run_timed_out)

    def run_script(self, script: Script, env: Mapping[str, str], run_deadline: Optional[float]) -> ScriptResult:
        """Run one script, streaming its output to the journal and keeping the last lines."""
        start = time.monotonic()
        limits = []
        if self.config.script_timeout_sec > 0:
            limits.append((start + self.config.script_timeout_sec, f"{self.config.script_timeout_sec} s per script"))
        if run_deadline is not None:
            limits.append((run_deadline, f"{self.config.run_timeout_sec} s for the whole run"))
        deadline, limit_text = min(limits) if limits else (None, "")
        tail: collections.deque = collections.deque(maxlen=max(self.config.output_lines, 0) or None)
        keep = self.config.output_lines > 0
        try:
            proc = subprocess.Popen(
                script.argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=str(self.layout.root),
                start_new_session=True,
            )
        except OSError as err:
            self.journal.emit(ERR, f"Script '{script.name}' FAILURE (cannot run: {err.strerror})")
            return ScriptResult(script.name, str(script.path), script.kind, FAILED, None,
                                time.monotonic() - start, (), f"cannot run: {err.strerror}")
        timed_out = self._pump(proc, script.name, deadline, tail if keep else None)
        if not timed_out:
            # Output closed, but the script may still run (e.g. it redirected its output away).
            try:
                proc.wait(timeout=None if deadline is None else max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out:
            self._kill(proc)
        duration = time.monotonic() - start
        output = tuple(tail) if keep else ()
        if timed_out:
            reason = f"timed out after {duration:.1f} s (limit {limit_text})"
            self.journal.emit(ERR, f"Script '{script.name}' FAILURE ({reason})")
            return ScriptResult(script.name, str(script.path), script.kind, TIMEOUT, None, duration, output, reason)
        code = proc.returncode
        if code == 0:
            self.journal.emit(INFO, f"Script '{script.name}' SUCCESS")
            return ScriptResult(script.name, str(script.path), script.kind, PASSED, 0, duration, output)
        if code < 0:
            reason = f"killed by signal {-code}"
        else:
            reason = f"exit code {code}"
        level = ERR if script.required else NOTICE
        suffix = "" if script.required else ". Continuing..."
        self.journal.emit(level, f"Script '{script.name}' FAILURE (exit code '{code}'){suffix}")
        return ScriptResult(script.name, str(script.path), script.kind, FAILED, code, duration, output, reason)

    def _pump(
        self, proc: subprocess.Popen, name: str, deadline: Optional[float], tail: Optional[collections.deque]
    ) -> bool:
        """Copy output until EOF (or the process exits leaving the pipe to a child); True on timeout."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        pending = b""
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        try:
            while True:
                wait = 0.2
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return True
                    wait = min(wait, left)
                if not sel.select(wait):
                    if proc.poll() is not None:
                        break  # exited; a background child still holds the pipe
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._line(name, line, tail)
            if pending:
                self._line(name, pending, tail)
            return False
        finally:
            sel.close()
            proc.stdout.close()

    def _line(self, name: str, raw: bytes, tail: Optional[collections.deque]) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if tail is not None:
            tail.append(text)
        self.journal.emit(INFO, f"{name}: {text}")

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        for sig, grace in ((signal.SIGTERM, KILL_GRACE_SEC), (signal.SIGKILL, None)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
