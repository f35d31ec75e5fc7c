"""A device in QEMU (TCG, q35, OVMF): boot a disk through a qcow2 overlay, read its console, run commands on it.

Serial port 0 is the firmware, GRUB and kernel console, logged to ``console.log``; a virtio console
(``hvc0`` in the guest) carries a root shell (a getty with autologin that test images enable), reached
through a unix socket. Not a second serial port: OVMF merges every serial port into the console input
GRUB reads, so keystrokes meant for the shell would land in the boot menu.
Waiting is always for a marker in the console log or for a command's end marker, never a blind sleep.
Guest networking is QEMU user mode: the guest reaches the host's loopback as ``10.0.2.2``.
A power cut is ``SIGKILL`` of the QEMU process; :meth:`Machine.start` again boots the same disk.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS.fd")
HOST_FROM_GUEST = "10.0.2.2"


class MachineError(AssertionError):
    """The VM did not do what a test waited for (the message carries the console's tail)."""


@dataclass
class Machine:
    """One virtual device with its own overlay disk, firmware variables and logs in ``workdir``."""

    base_disk: Path
    workdir: Path
    memory_mib: int = 1024
    cpus: int = 2
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _shell: socket.socket | None = field(default=None, repr=False)
    _shell_buf: bytes = field(default=b"", repr=False)
    _seq: int = field(default=0, repr=False)
    _powered: bool = field(default=False, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)
    starts: int = field(default=0)

    @property
    def disk(self) -> Path:
        return self.workdir / "disk.qcow2"

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    @property
    def shell_sock(self) -> Path:
        return self.workdir / "shell.sock"

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.disk.exists():
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(self.base_disk), str(self.disk)],
                check=True,
            )
        vars_fd = self.workdir / "OVMF_VARS.fd"
        if not vars_fd.exists():
            shutil.copyfile(OVMF_VARS, vars_fd)

    def argv(self) -> list[str]:
        return [
            "qemu-system-x86_64",
            "-machine", "q35",
            "-accel", "tcg",
            "-m", str(self.memory_mib),
            "-smp", str(self.cpus),
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={self.workdir / 'OVMF_VARS.fd'}",
            "-drive", f"file={self.disk},if=virtio,format=qcow2,cache=unsafe",
            "-netdev", "user,id=n0",
            "-device", "virtio-net-pci,netdev=n0",
            "-chardev", f"file,id=con,path={self.console_log},append=on",
            "-serial", "chardev:con",
            "-device", "virtio-serial-pci",
            "-chardev", f"socket,id=sh,path={self.shell_sock},server=on,wait=off",
            "-device", "virtconsole,chardev=sh",
            "-display", "none",
            "-monitor", "none",
            "-nodefaults",
            "-no-reboot",
        ]  # fmt: skip

    def start(self) -> None:
        """Power on. Guest reboots restart QEMU (``-no-reboot``): a cold boot of the same disk and NVRAM.

        QEMU's warm reset of OVMF under TCG with two vCPUs sometimes never reaches the boot loader,
        so the harness turns each guest reboot into a fresh QEMU process; the console log is appended.
        """
        if self.running:
            raise MachineError("machine is already running")
        self._prepare()
        self._close_shell()
        self._powered = True
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="qemu-watch", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        self.shell_sock.unlink(missing_ok=True)
        self.starts += 1
        with (self.workdir / "qemu.stderr").open("ab") as err:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=err)

    def _watch(self) -> None:
        while self._powered and self.proc is not None:
            rc = self.proc.wait()
            if not self._powered:
                return
            if rc != 0:  # QEMU itself failed: stay off, waits report it
                self._powered = False
                return
            self._spawn()  # the guest rebooted (or powered off): boot again

    @property
    def running(self) -> bool:
        return self._powered and self.proc is not None

    def power_cut(self) -> None:
        """SIGKILL QEMU: the guest loses power mid-whatever, exactly like pulling the plug."""
        self._powered = False
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        if self._watcher is not None:
            self._watcher.join(timeout=30)
        self._close_shell()
        self.proc = None

    def stop(self) -> None:
        """Tear down (a power cut; tests that need a clean shutdown ask the guest for one)."""
        self.power_cut()

    # -- console -------------------------------------------------------------------------------------

    def console(self) -> str:
        return self.console_log.read_text(errors="replace") if self.console_log.exists() else ""

    def wait_console(self, pattern: str, timeout: float, *, since: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears in the console log after offset ``since``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.console()
            m = rx.search(text, since)
            if m:
                return m
            if not self.running:
                raise MachineError(f"VM stopped while waiting for {pattern!r}; console tail:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                raise MachineError(f"no {pattern!r} on the console within {timeout:.0f} s; tail:\n{text[-3000:]}")
            time.sleep(0.2)

    # -- shell on hvc0 ------------------------------------------------------------------------------

    def reset_shell(self) -> None:
        """Drop the shell connection and anything unread (after the guest rebooted under a command)."""
        self._close_shell()

    def _close_shell(self) -> None:
        if self._shell is not None:
            self._shell.close()
        self._shell = None
        self._shell_buf = b""

    def _connect(self, timeout: float) -> socket.socket:
        if self._shell is not None:
            return self._shell
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(self.shell_sock))
                s.settimeout(0.5)
                self._shell = s
                return s
            except OSError:
                if time.monotonic() > deadline or not self.running:
                    raise MachineError(f"cannot connect to the VM shell socket {self.shell_sock}") from None
                time.sleep(0.2)

    def _read_until(self, rx: re.Pattern[bytes], timeout: float) -> re.Match[bytes]:
        s = self._connect(timeout)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self._shell_buf)
            if m:
                self._shell_buf = self._shell_buf[m.end() :]
                return m
            if time.monotonic() > deadline:
                tail = self._shell_buf[-2000:].decode(errors="replace")
                raise MachineError(f"shell gave no {rx.pattern!r} within {timeout:.0f} s; got:\n{tail}")
            if not self.running:
                raise MachineError("VM stopped while a shell command was running")
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:  # QEMU restarted for a guest reboot: the old socket is gone
                chunk = b""
            if not chunk:
                self._close_shell()
                raise MachineError("the shell connection closed (the guest is rebooting)")
            self._shell_buf += chunk

    def wait_shell(self, timeout: float) -> None:
        """Wait until the root shell on hvc0 answers (the system reached multi-user with our getty)."""
        deadline = time.monotonic() + timeout
        while True:
            self._seq += 1
            token = f"FS_READY_{self._seq}"
            try:
                s = self._connect(max(1.0, deadline - time.monotonic()))
                s.sendall(f"\nstty -echo; echo {token[:3]}''{token[3:]}\n".encode())
                self._read_until(re.compile(token.encode()), timeout=3)
                return
            except (MachineError, OSError):
                self._close_shell()
                if time.monotonic() > deadline or not self.running:
                    raise

    def run(self, command: str, timeout: float = 60, *, check: bool = True) -> tuple[int, str]:
        """Run ``command`` in the guest's root shell; returns (exit status, output)."""
        s = self._connect(timeout)
        self._seq += 1
        n = self._seq
        start = f"FS_BEGIN_{n}"
        try:
            s.sendall(f"echo {start[:3]}''{start[3:]}; {command}; echo FS_END_$(( {n} ))_$?\n".encode())
        except OSError as err:
            self._close_shell()
            raise MachineError(f"the shell connection failed ({err}); is the guest rebooting?") from err
        self._read_until(re.compile(start.encode() + rb"\r?\n"), timeout)
        m = self._read_until(re.compile(rb"(?s)(.*?)FS_END_" + str(n).encode() + rb"_(\d+)"), timeout)
        out = m.group(1).decode(errors="replace").replace("\r\n", "\n")
        rc = int(m.group(2))
        if check and rc != 0:
            raise MachineError(f"guest command failed (exit {rc}): {command}\n{out[-2000:]}")
        return rc, out
