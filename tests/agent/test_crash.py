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
from updater.agent import Agent
from updater.backends import OstreeBackend

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



class _FinalizedAtShutdown(OstreeBackend):
    """The ostree backend of a booted device (``staged``: ostree writes the deployment to the bootloader
    only at shutdown, so a power cut before that loses it); a sysroot in a directory has no shutdown,
    so it deploys directly and the test removes the deployment to play the lost one."""

    def stage(self, osname: str, checksum: str) -> None:
        self.sysroot.deploy(osname, checksum, stage=False)

    def arm_finalizer(self) -> None:
        pass


def _live_agent(dev: Device) -> Agent:
    agent: Agent = dev.agent()
    agent._backend = _FinalizedAtShutdown(agent.sysroot, staged=True)
    return agent


@pytest.mark.parametrize("cut_after", ["staged", "rebooting"])
def test_staged_deployment_lost_to_a_power_cut_is_staged_again_at_once_by_the_service(
        site_and_device: tuple[ReleaseSite, Device], cut_after: str) -> None:
    """Seen in the VM: the staged deployment lives only until shutdown finalizes it, and a power cut
    before (or during) that loses it. Reconcile notices at boot and goes back to staging; the service's
    next, unforced step must stage again then, not once the catalog recheck the staged phase had
    scheduled is due (a poll interval later: an hour by default). And the lost deployment is no failed
    boot of the release: it is not denylisted."""
    site, dev = site_and_device
    dev.config.update(reboot_strategy="manual", poll_interval_seconds=86400)
    dev.write_config()
    site.publish("2")
    state = _live_agent(dev).advance(force=True)
    assert state.phase == "staged" and state.retry_after, state  # the next catalog recheck is a day away
    if cut_after == "rebooting":
        state = _live_agent(dev).maybe_reboot(state, force=True)
        assert state.phase == "rebooting" and dev.reboots_requested == 1
    lost = [d for d in dev.deployments() if d.version == "2"]   # the power cut: never finalized
    assert len(lost) == 1
    # undeploy prunes the repo too; a lost staged deployment leaves the pulled commit: keep it.
    repo = f"--repo={dev.root}/ostree/repo"
    subprocess.run(["ostree", "refs", repo, "--create=test/keep", lost[0].checksum], check=True)
    subprocess.run(["ostree", "admin", "undeploy", f"--sysroot={dev.root}", str(lost[0].index)], check=True,
                   capture_output=True)
    subprocess.run(["ostree", "refs", repo, "--delete", "test/keep"], check=True)

    assert dev.boot(reconcile=lambda: _live_agent(dev).reconcile()).version == "1"
    state = dev.state_obj()
    assert state.phase == "protected" and not state.denylist, state
    state = _live_agent(dev).advance()           # the service's next step, unforced
    assert state.phase == "staged", state
    assert [d.version for d in dev.deployments()] == ["2", "1"]
    state = _live_agent(dev).maybe_reboot(state, force=True)    # `fieldshift-agent reboot`
    assert state.phase == "rebooting"
    assert dev.boot(reconcile=lambda: _live_agent(dev).reconcile()).version == "2"
    assert _live_agent(dev).advance().phase == "idle"
    assert dev.state()["last_result"]["result"] == "success"


def test_commit_pruned_after_a_lost_staged_deployment_is_downloaded_again(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    """The staged deployment was lost and a cleanup pruned its commit meanwhile: staging can only fail
    ("No such metadata object") for ever, so the agent goes back to downloading instead of retrying."""
    site, dev = site_and_device
    dev.config.update(reboot_strategy="manual", poll_interval_seconds=86400)
    dev.write_config()
    site.publish("2")
    state = _live_agent(dev).advance(force=True)
    assert state.phase == "staged", state
    lost = [d for d in dev.deployments() if d.version == "2"]
    subprocess.run(["ostree", "admin", "undeploy", f"--sysroot={dev.root}", str(lost[0].index)], check=True,
                   capture_output=True)     # prunes the commit: no ref holds it
    assert not (dev.root / "ostree/repo/objects" / lost[0].checksum[:2] / f"{lost[0].checksum[2:]}.commit").exists()

    assert dev.boot(reconcile=lambda: _live_agent(dev).reconcile()).version == "1"
    state = _live_agent(dev).advance()
    assert state.phase == "staged", state
    assert state.failures == 0, state     # no failed step: the download was simply done again
    assert [d.version for d in dev.deployments()] == ["2", "1"]
    state = _live_agent(dev).maybe_reboot(state, force=True)
    assert dev.boot(reconcile=lambda: _live_agent(dev).reconcile()).version == "2"
    assert _live_agent(dev).advance().phase == "idle"
