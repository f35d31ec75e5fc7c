"""The service itself: ``fieldshift-agent run`` under a fake service manager socket, and the units."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.importtime import imported
from tests.sim.device import Device, ReleaseSite

UNITS = Path(__file__).resolve().parents[2] / "updater" / "data" / "systemd"


def test_run_notifies_ready_applies_the_update_and_stops_cleanly_on_sigterm(
        site_and_device: tuple[ReleaseSite, Device], tmp_path: Path) -> None:
    site, dev = site_and_device
    site.publish("2")
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(60)
        proc = dev.popen("run", env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000"})
        try:
            messages: list[bytes] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(b"READY=1" in m for m in messages):
                messages.append(sock.recv(4096))
            assert any(b"READY=1" in m for m in messages)
            while time.monotonic() < deadline and dev.state()["phase"] != "rebooting":
                time.sleep(0.1)
            assert dev.state()["phase"] == "rebooting"
            assert (dev.root / "reboot-requested").exists()
            seen = b"".join(sock.recv(4096) for _ in range(3))
            assert b"WATCHDOG=1" in seen or b"STATUS=" in seen
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_cli_request_reaches_the_running_service(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    dev.config.update(reboot_strategy="manual", poll_interval_seconds=3600)
    dev.write_config()
    site.publish("2")
    proc = dev.popen("run")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and dev.state()["phase"] != "staged":
            time.sleep(0.1)
        assert dev.state()["phase"] == "staged"
        queued = dev.cli("reboot")
        assert queued.returncode == 0 and "running agent" in queued.stderr
        while time.monotonic() < deadline and dev.state()["phase"] != "rebooting":
            time.sleep(0.1)
        assert dev.state()["phase"] == "rebooting"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.communicate()


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = sorted(UNITS.glob("*.service"))
    assert {u.name for u in units} == {"fieldshift-agent.service", "fieldshift-agent-reconcile.service"}
    copies = []
    for unit in units:
        text = unit.read_text().replace("/usr/bin/fieldshift-agent", shutil.which("true") or "/bin/true")
        copy = tmp_path / unit.name
        copy.write_text(text)
        copies.append(str(copy))
    out = subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True)
    problems = [line for line in out.stderr.splitlines() if any(u.name in line for u in units)]
    assert problems == [], out.stderr
    service = (UNITS / "fieldshift-agent.service").read_text()
    for setting in ("Type=notify", "WatchdogSec=", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes"):
        assert setting in service
    assert "Before=microshift.service" in (UNITS / "fieldshift-agent-reconcile.service").read_text()


def test_service_applies_a_changed_config_without_a_restart(site_and_device: tuple[ReleaseSite, Device],
                                                            tmp_path: Path) -> None:
    """A drop-in edited while the service runs (the release source, here) is what the next step uses."""
    site, dev = site_and_device
    site.publish("2")
    empty = tmp_path / "nowhere"
    empty.mkdir()
    dev.config.update(reboot_strategy="manual", source_dir=str(empty))
    dev.write_config()
    proc = dev.popen("run")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not dev.state().get("last_error"):
            time.sleep(0.1)
        assert dev.state()["phase"] == "idle" and dev.state()["last_error"], dev.state()
        dev.config.update(source_dir=str(site.release_dir))
        dev.write_config()
        queued = dev.cli("update")
        assert queued.returncode == 0 and "running agent" in queued.stderr
        while time.monotonic() < deadline and dev.state()["phase"] != "staged":
            time.sleep(0.1)
        assert dev.state()["phase"] == "staged", dev.state()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        out, err = proc.communicate()
    assert "configuration changed, reloaded" in err


def test_a_hung_step_is_stopped_after_step_timeout_and_the_service_goes_on(
        site_and_device: tuple[ReleaseSite, Device], tmp_path: Path) -> None:
    """A step that never returns (here the reboot command hangs) is killed with what it started; the
    service keeps serving: it answers the next request and stops cleanly."""
    site, dev = site_and_device
    site.publish("2")
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\necho $$ > \"$0.pid\"\nexec sleep 600\n")
    hang.chmod(0o755)
    dev.config.update(reboot_command=[str(hang)], step_timeout_seconds=3)
    dev.write_config()
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        proc = dev.popen("run", env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1500000"})
        try:
            pidfile = Path(f"{hang}.pid")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not pidfile.exists():
                time.sleep(0.1)
            assert pidfile.exists(), "the step never reached the reboot command"
            hung = int(pidfile.read_text())
            pings = 0
            while time.monotonic() < deadline and Path(f"/proc/{hung}").exists():
                pings += sock.recv(4096).count(b"WATCHDOG=1")  # fed while the step runs
            assert not Path(f"/proc/{hung}").exists(), "the hung reboot command was not killed"
            assert pings >= 2
            assert proc.poll() is None, "the service died with its step"
            assert dev.state()["phase"] == "rebooting"  # the step got that far; the grace period runs
            queued = dev.cli("update")
            assert queued.returncode == 0 and "running agent" in queued.stderr
            while time.monotonic() < deadline and (dev.state_dir / "requests" / "update").exists():
                time.sleep(0.1)
            assert not (dev.state_dir / "requests" / "update").exists(), "the service took no request"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                _out, err = proc.communicate()
    assert code == 0, err
    assert "advance step still running after 3 s (step_timeout_seconds): stopped" in err


def test_a_drop_in_written_while_the_service_reads_its_config_is_not_missed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service must notice an edit that lands while it is reading its configuration (at start, the
    VM tier's device wrote its release URL right then and kept polling the image's default for good)."""
    from updater import cli
    from updater import config as config_mod

    dropin = tmp_path / "agent.d" / "90-site.toml"
    dropin.parent.mkdir()
    dropin.write_text('release_url = ["http://127.0.0.1:9/old"]\n')
    real_load = config_mod.load

    def load_while_an_edit_lands(*args: Any, **kwargs: Any) -> Any:
        cfg = real_load(*args, **kwargs)
        dropin.write_text('release_url = ["http://127.0.0.1:9/new-and-longer"]\n')  # after the read
        return cfg

    monkeypatch.setattr(config_mod, "load", load_while_an_edit_lands)
    watch = cli.ConfigWatch([dropin])
    first = watch.load()
    assert first.release_urls == ("http://127.0.0.1:9/old",)
    assert watch.changed(), "an edit made during the read went unnoticed"
    monkeypatch.setattr(config_mod, "load", real_load)
    assert watch.load().release_urls == ("http://127.0.0.1:9/new-and-longer",)
    assert not watch.changed()
    dropin.unlink()
    assert watch.changed()  # a removed drop-in is a change too


def test_reconcile_after_an_ordinary_boot_does_not_load_the_agent(site_and_device: tuple[ReleaseSite, Device]) -> None:
    """The early-boot unit runs on every boot; with nothing pending it ends before importing the agent
    (and cryptography); with an update staged it does the whole job."""
    site, dev = site_and_device
    idle = dev.cli("reconcile", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert idle.returncode == 0 and "phase idle" in idle.stdout, idle.stderr[-2000:]
    assert not {"updater.agent", "cryptography", "updater.catalog"} & imported(idle.stderr)

    dev.config.update(reboot_strategy="manual")
    dev.write_config()
    site.publish("2")
    assert dev.agent().advance().phase == "staged"
    staged = dev.cli("reconcile", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert staged.returncode == 0 and "phase staged" in staged.stdout, staged.stderr[-2000:]
    assert "updater.agent" in imported(staged.stderr)
