"""A single-instance lock: an fcntl flock on ``<state_dir>/agent.lock`` held for the agent's lifetime."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from greenboot.errors import UserError


class AlreadyRunning(UserError):
    """Another agent holds the lock."""


class AgentLock:
    """Exclusive, non-blocking; released by the kernel when the process dies (even on SIGKILL)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "agent.lock"
        self._fd: int | None = None

    def acquire(self) -> AgentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise AlreadyRunning(f"another fieldshift-agent is running{who}; wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AgentLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
