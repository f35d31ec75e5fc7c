"""Reboot strategies: fleet_lock against a loopback FleetLock server, manual, and the request path."""

from __future__ import annotations

import json

from tests.agent.fleetlock_server import FleetLockServer
from tests.sim.device import Device, ReleaseSite
from updater import rollout
from updater.fleetlock import FleetLock, FleetLockError


def test_fleetlock_client_sends_zincatis_body_and_header() -> None:
    with FleetLockServer() as server:
        FleetLock(server.url, "node-a", "workers").lock()
        FleetLock(server.url, "node-a", "workers").unlock()
        first, second = server.state.requests
    assert first["path"] == "/base/v1/pre-reboot" and second["path"] == "/base/v1/steady-state"
    assert first["header"] == "true"
    assert json.loads(first["raw"]) == {"client_params": {"id": "node-a", "group": "workers"}}


def test_fleetlock_refusal_carries_the_servers_reason() -> None:
    with FleetLockServer(slots=1) as server:
        FleetLock(server.url, "node-a").lock()
        try:
            FleetLock(server.url, "node-b").lock()
        except FleetLockError as err:
            assert err.kind == "failed_lock_semaphore_full"
            assert "semaphore currently full" in err.message
        else:
            raise AssertionError("a full semaphore must refuse the second node")


def test_fleet_lock_strategy_waits_for_a_slot_reboots_and_releases_it_after_a_good_boot(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    with FleetLockServer(slots=1) as server:
        server.state.holders.add("another-node")
        dev.config.update(reboot_strategy="fleet_lock", fleet_lock_url=server.url, fleet_lock_group="edge")
        dev.write_config()
        site.publish("2")
        state = dev.agent().advance()
        assert state.phase == "staged" and dev.reboots_requested == 0
        assert "semaphore currently full" in state.last_error
        server.state.holders.clear()
        state = dev.agent().advance(force=True)
        assert state.phase == "rebooting" and state.fleet_lock_held
        node = rollout.node_id((dev.root / "etc/machine-id").read_text().strip())
        assert server.state.holders == {node}
        assert node not in (dev.root / "etc/machine-id").read_text()  # never the raw machine id
        dev.boot_until_settled()
        final = dev.agent().advance()
        assert final.phase == "idle" and not final.fleet_lock_held
        assert server.state.holders == set()
        assert server.state.requests[-1]["path"] == "/base/v1/steady-state"


def test_manual_strategy_stages_and_waits_for_the_reboot_command(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    dev.config.update(reboot_strategy="manual")
    dev.write_config()
    site.publish("2")
    state = dev.agent().advance()
    assert state.phase == "staged"
    assert "fieldshift-agent reboot" in state.last_error
    done = dev.cli("reboot")
    assert done.returncode == 0, done.stderr
    assert (dev.root / "reboot-requested").exists()   # the configured reboot command ran
    assert dev.state()["phase"] == "rebooting"


def test_status_json_reports_booted_pending_policy_and_progress(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    dev.config.update(reboot_strategy="manual")
    dev.write_config()
    site.publish("2")
    dev.agent().advance()
    out = dev.cli("status", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["booted"]["version"] == "1"
    assert info["pending"]["version"] == "2"
    assert info["phase"] == "staged" and info["reboot_strategy"] == "manual"
    assert info["download"]["state"] == "done"
    text = dev.cli("status")
    assert "pending" in text.stdout and "2 (" in text.stdout
    metrics = (dev.root / "metrics/fieldshift_agent.prom").read_text()
    assert 'fieldshift_agent_phase{phase="staged"} 5' in metrics


def test_check_says_what_would_be_applied_and_changes_nothing(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("2")
    before = sorted(p.name for p in dev.state_dir.rglob("*")) if dev.state_dir.exists() else []
    out = dev.cli("check", "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["version"] == "2" and found["booted_version"] == "1"
    after = sorted(p.name for p in dev.state_dir.rglob("*")) if dev.state_dir.exists() else []
    assert [n for n in after if n != "booted.json"] == before   # only the per-boot identity cache
    assert dev.state()["phase"] == "idle"


def test_a_lost_reboot_is_asked_for_again_after_the_grace_period(site_and_device: tuple[ReleaseSite, Device]) -> None:
    """A reboot job that never happens (cancelled, refused) must not leave the device 'rebooting' for ever."""
    from datetime import timedelta

    from updater.agent import REBOOT_GRACE_SECONDS, utcnow

    site, dev = site_and_device
    site.publish("2")
    state = dev.agent().advance()
    assert state.phase == "rebooting" and dev.reboots_requested == 1
    # Same boot, within the grace period: the reboot may still be under way, nothing is repeated.
    soon = utcnow() + timedelta(seconds=REBOOT_GRACE_SECONDS - 60)
    assert dev.agent(now=lambda: soon).advance().phase == "rebooting"
    assert dev.agent(now=lambda: soon).advance(force=True).phase == "rebooting"
    assert dev.reboots_requested == 1
    # Past it, still the same boot: the request was lost; the agent asks again (policy immediate).
    later = utcnow() + timedelta(seconds=REBOOT_GRACE_SECONDS + 60)
    state = dev.agent(now=lambda: later).advance()
    assert dev.reboots_requested == 2
    assert state.phase == "rebooting"
    # The reboot then happens: the new boot confirms the update.
    dev.boot()
    assert dev.booted_version() == "2"
    state = dev.agent().advance()  # the service's first step after greenboot's verdict
    assert state.phase == "idle" and state.last_result["result"] == "success", state
