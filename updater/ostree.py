"""Device-side ostree: the sysroot's deployments, the agent's remote, pulls by checksum, deploys.

One wrapper around the ``ostree`` CLI for the device (the builder has its own in ``builder/ostree.py``).
Every call names the sysroot or repo explicitly, so a sysroot in a directory works like ``/``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Callable, Mapping, Sequence

from greenboot.errors import UserError
from greenboot.external import ToolError, run
from greenboot.ostree import Deployment, parse_status  # the one deployment model; callers import it from here

log = logging.getLogger("fieldshift.external")


class OstreeError(UserError):
    """An ostree operation failed; the message carries ostree's own last line."""


def _ostree(args: Sequence[str], *, timeout: float | None = None) -> str:
    try:
        return run(["ostree", *args], timeout=timeout).stdout
    except ToolError as err:
        raise OstreeError(f"ostree {args[0]} {args[1] if len(args) > 1 and not args[1].startswith('-') else ''}"
                          .strip() + f" failed: {err.message.split(': ', 1)[-1]}") from err


def _read_bytes(pid: int) -> int:
    """Bytes a process has read so far (sockets included), from ``/proc/PID/io``; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/io", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def has_commit(repo: Path, checksum: str) -> bool:
    """True when ``repo`` holds the whole commit: its commit object and no interrupted-pull marker."""
    repo = Path(repo)
    if (repo / "state" / f"{checksum}.commitpartial").exists():
        return False
    return (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").exists()


class Sysroot:
    """An ostree sysroot (``/`` on a device, any directory in tests) and its system repo."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.repo = self.path / "ostree" / "repo"

    def _admin(self, *args: str) -> str:
        return _ostree(["admin", *args[:1], f"--sysroot={self.path}", *args[1:]])

    def deployments(self) -> list[Deployment]:
        """All deployments, in bootloader order."""
        return parse_status(self._admin("status"))

    def deployment_of_cmdline(self, cmdline: str) -> tuple[str, str] | None:
        """``(osname, "<checksum>.<serial>")`` named by the ``ostree=`` kernel argument, or None."""
        for arg in cmdline.split():
            if arg.startswith("ostree="):
                link = self.path / arg[len("ostree="):].lstrip("/")
                try:
                    target = link.resolve(strict=True)
                except (OSError, RuntimeError):
                    return None
                if target.parent.name == "deploy" and target.parent.parent.parent.name == "deploy":
                    return target.parent.parent.name, target.name
                return None
        return None

    def deployment_of_root(self, root: Path) -> tuple[str, str] | None:
        """``(osname, "<checksum>.<serial>")`` whose directory is ``root`` (same device and inode),
        the way ostree itself finds the booted deployment; None when no deployment matches."""
        try:
            st = os.stat(root)
        except OSError:
            return None
        base = self.path / "ostree" / "deploy"
        for os_dir in base.iterdir() if base.is_dir() else ():
            deploy_dir = os_dir / "deploy"
            for d in deploy_dir.iterdir() if deploy_dir.is_dir() else ():
                if d.name.endswith(".origin") or not d.is_dir():
                    continue
                try:
                    dst = os.stat(d)
                except OSError:
                    continue
                if (dst.st_dev, dst.st_ino) == (st.st_dev, st.st_ino):
                    return os_dir.name, d.name
        return None

    def has_commit(self, checksum: str) -> bool:
        """True when the commit and all its objects are in the local repo (no partial pull)."""
        return has_commit(self.repo, checksum)

    def commit_version(self, checksum: str) -> str:
        out = _ostree(["show", f"--repo={self.repo}", "--print-metadata-key=version", checksum])
        return out.strip().strip("'")

    def set_remote(self, name: str, url: str, options: Mapping[str, str]) -> None:
        """Create or replace the agent's remote (no GPG: trust comes from the signed catalog)."""
        sets = [f"--set={k}={v}" for k, v in sorted(options.items())]
        _ostree(["remote", "add", f"--repo={self.repo}", "--force", "--no-gpg-verify", *sets, name, url])

    def pull(self, remote: str, checksum: str, *, retries: int, low_speed_limit: int = 0, low_speed_time: int = 0,
             progress: Callable[[int], None] | None = None) -> str:
        """Fetch ``checksum`` from ``remote`` (static delta when the summary offers one).

        Objects already in the repo, including those of an interrupted pull, are never fetched again.
        The remote options ``low-speed-limit-bytes``/``low-speed-time-seconds`` make newer libostree abort
        a crawling transfer by itself; older ones (2022.x) ignore them, so the same limit is also enforced
        here by watching how many bytes the pull process reads (``/proc/PID/io`` ``rchar``): under
        ``low_speed_limit`` bytes/s for ``low_speed_time`` seconds, the pull is stopped and reported.
        ``progress`` receives the bytes read so far. Returns ostree's summary line.
        """
        argv = ["ostree", "pull", f"--repo={self.repo}", f"--network-retries={retries}", remote, checksum]
        log.debug("run: %s", " ".join(argv))
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        samples: deque[tuple[float, int]] = deque()
        start = time.monotonic()
        first = _read_bytes(proc.pid)
        while True:
            try:
                out, err = proc.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                now, got = time.monotonic(), _read_bytes(proc.pid)
                samples.append((now, got))
                if progress is not None:
                    progress(max(got - first, 0))
                if low_speed_limit > 0 and low_speed_time > 0 and now - start >= low_speed_time:
                    while len(samples) > 1 and samples[1][0] <= now - low_speed_time:
                        samples.popleft()
                    t0, b0 = samples[0]
                    if now - t0 >= low_speed_time * 0.9 and (got - b0) < low_speed_limit * (now - t0):
                        proc.kill()
                        proc.communicate()
                        raise OstreeError(f"ostree pull stopped: under {low_speed_limit} bytes/s for "
                                          f"{low_speed_time} s (stalled connection)") from None
        if proc.returncode != 0:
            last = [line.strip() for line in (err or out).splitlines() if line.strip()]
            raise OstreeError(f"ostree pull failed: {last[-1] if last else f'exit {proc.returncode}'}")
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def pull_local(self, source_repo: Path, checksum: str) -> str:
        """Import ``checksum`` from a repository on disk (a release directory or an unpacked bundle)."""
        out = _ostree(["pull-local", f"--repo={self.repo}", str(source_repo), checksum])
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def deploy(self, osname: str, checksum: str, *, stage: bool) -> None:
        """Make ``checksum`` the new default deployment (``--stage``: finalized at shutdown by systemd)."""
        args = ["deploy", f"--os={osname}"]
        if stage:
            args.append("--stage")
        self._admin(*args, checksum)

    def supports_set_default(self) -> bool:
        """``ostree admin set-default`` exists (libostree 2023.x and later)."""
        return "set-default" in run(["ostree", "admin", "--help"], check=False).stdout

    def set_default(self, index: int) -> None:
        self._admin("set-default", str(index))

    def undeploy(self, index: int) -> None:
        self._admin("undeploy", str(index))

    def cleanup(self) -> None:
        self._admin("cleanup")
