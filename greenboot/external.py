"""Run external programs: argv lists only, every call logged, failures raised as ToolError.

One small wrapper per tool builds on :func:`run` (for example ``builder/ostree.py``); this module
holds what they share. Never pass a shell string.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import Mapping, Sequence, Union

from greenboot.errors import UserError

log = logging.getLogger("fieldshift.external")

Arg = Union[str, "os.PathLike[str]"]


class ToolError(UserError):
    """An external program failed; carries its argv, exit status and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, stdout: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        last = _last_line(stderr) or _last_line(stdout) or "no output"
        super().__init__(f"{os.path.basename(self.argv[0])} failed (exit {returncode}): {last}")


class ToolMissing(UserError):
    """A required external program is not installed."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        super().__init__(f"{tool} is not installed; run .ci/setup (or install the package that provides it)")


class ToolTimeout(UserError):
    """An external program ran longer than allowed and was killed."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        super().__init__(f"{os.path.basename(self.argv[0])} did not finish within {timeout:g} s and was stopped")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _as_text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def which(tool: str) -> str:
    """Absolute path of ``tool`` on PATH, or raise :class:`ToolMissing`."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool)
    return path


def run(
    argv: Sequence[Arg],
    *,
    cwd: Arg | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | str | None = None,
    check: bool = True,
    timeout: float | None = None,
    capture: bool = True,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``argv`` (no shell), log it, and raise :class:`ToolError` on a non-zero exit when ``check``.

    ``env`` entries are added to the current environment. With ``capture=False`` output goes to the
    caller's stdout/stderr (useful for progress), and the error carries no stderr text.
    """
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("empty argv")
    if os.sep not in args[0] and shutil.which(args[0]) is None:
        raise ToolMissing(args[0])
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    log.debug("run: %s", " ".join(args))
    if isinstance(input, str) and not text:
        input = input.encode()
    try:
        proc = subprocess.run(
            args,
            cwd=os.fspath(cwd) if cwd is not None else None,
            env=full_env,
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            timeout=timeout,
            text=text,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise ToolTimeout(args, timeout or 0) from err
    if check and proc.returncode != 0:
        raise ToolError(args, proc.returncode, _as_text(proc.stderr), _as_text(proc.stdout))
    return proc
