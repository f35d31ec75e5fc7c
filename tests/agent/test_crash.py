"""The agent process killed with SIGKILL at every step boundary and in the middle of the pull.

The agent runs as a real subprocess (``python -m updater.cli``). ``FIELDSHIFT_AGENT_STOP_AT=<phase>``
makes it stop itself right after that phase is durable; the test then SIGKILLs it, power-cycles the
simulated device (which must boot a healthy deployment), restarts the agent and checks that the update
converges with a consistent sysroot.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time

import pytest

from tests.faultproxy import Fault, FaultProxy
from tests.httpserve import StaticServer
from tests.sim.device import Device, ReleaseSite

BOUNDARIES = ("selected", "downloaded", "protected", "armed", "staged", "rebooting")


def _wait_stopped(proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"agent exited ({proc.returncode}) before the stop point: {err}")
        with open(f"/proc/{proc.pid}/stat") as fh:
            if fh.read().split(") ", 1)[1].startswith("T"):
                return
        time.sleep(0.05)
    raise AssertionError("agent never reached the stop point")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.communicate()


def _consistent(dev: Device) -> None:
    deployments = dev.deployments()
    assert deployments and all(d.version in ("1", "2") for d in deployments)
    out = subprocess.run(["ostree", "fsck", f"--repo={dev.root}/ostree/repo"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _converge(dev: Device) -> None:
    for _ in range(4):
        done = dev.cli("update")
        assert done.returncode in (0, 1), done.stderr
        phase = dev.state()["phase"]
        if phase == "rebooting":
            dev.boot_until_settled()
            assert dev.cli("reconcile").returncode == 0
        if dev.state()["phase"] == "idle" and dev.state().get("last_result", {}).get("result") == "success":
            return
    raise AssertionError(f"update did not converge: {dev.state()}")


@pytest.mark.parametrize("phase", BOUNDARIES)
def test_sigkill_at_step_boundary_then_power_cut_still_boots_and_converges(
        site_and_device: tuple[ReleaseSite, Device], phase: str) -> None:
    site, dev = site_and_device
    site.publish("2")
    proc = dev.popen("update", env={"FIELDSHIFT_AGENT_STOP_AT": phase})
    _wait_stopped(proc)
    assert dev.state()["phase"] == phase
    _kill(proc)
    _consistent(dev)
    booted = dev.boot_until_settled()          # power cut: the device must come up healthy
    assert booted.version in ("1", "2")
    _converge(dev)
    assert dev.boots[-1].version == "2"
    assert [d.version for d in dev.deployments()] == ["2", "1"]
    _consistent(dev)


def test_sigkill_mid_pull_resumes_without_refetching_content(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("1")
    site.commit("2", payload=base64.b64encode(os.urandom(1_200_000)).decode())
    site.publish("2")
    with StaticServer(site.release_dir) as server, FaultProxy(server.url) as proxy:
        dev.config.update(release_url=[proxy.url], source_dir=None)
        dev.write_config()
        proxy.add(Fault("throttle", r".*", times=-1, rate=150_000))
        proc = dev.popen("update")
        deadline = time.monotonic() + 60
        while proxy.bytes_delivered(r"/repo/(objects|deltas)/") < 400_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        _kill(proc)
        assert dev.state()["phase"] == "selected"   # killed in the middle of the pull
        proxy.clear_faults()
        proxy.settle()
        received_before = proxy.bytes_delivered(r"/repo/(objects|deltas)/")
        assert received_before > 0
        _consistent(dev)
        _converge(dev)
        proxy.settle()
        assert proxy.completed_twice() == []
    assert dev.boots[-1].version == "2"


def test_second_agent_refuses_to_run_while_one_holds_the_lock(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("2")
    proc = dev.popen("update", env={"FIELDSHIFT_AGENT_STOP_AT": "selected"})
    _wait_stopped(proc)
    try:
        other = dev.cli("rollback")
        assert other.returncode != 0
        assert "another fieldshift-agent is running" in other.stderr
        queued = dev.cli("reboot")
        assert queued.returncode == 0 and (dev.state_dir / "requests" / "reboot").exists()
    finally:
        _kill(proc)
