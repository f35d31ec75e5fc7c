"""End-to-end update scenarios on the simulated device: real sysroot, real GRUB counting, real agent."""

from __future__ import annotations

import json

import pytest

from tests.sim.device import Device, ReleaseSite


def test_good_update_is_staged_rebooted_into_and_confirmed(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("2")
    dev.data_dir.mkdir(parents=True, exist_ok=True)
    (dev.data_dir / "etcd.db").write_bytes(b"v1 data")
    agent = dev.agent()
    state = agent.advance()
    assert state.phase == "rebooting", state
    assert dev.reboots_requested == 1
    booted = dev.boot_until_settled()
    assert booted.version == "2"
    final = dev.agent().advance()
    assert final.phase == "idle"
    assert final.last_result["result"] == "success"
    assert [d.version for d in dev.deployments()] == ["2", "1"]


def _tree_bytes(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("greenboot_fallback", [True, False], ids=["greenboot-makes-it-permanent", "agent-does"])
def test_bad_update_falls_back_rollback_sticks_data_restored_and_release_not_retried(
        site_and_device: tuple[ReleaseSite, Device], greenboot_fallback: bool) -> None:
    site, dev = site_and_device
    dev.greenboot_fallback = greenboot_fallback
    bad = site.publish("2", healthy=False)
    dev.data_dir.mkdir(parents=True, exist_ok=True)
    (dev.data_dir / "etcd.db").write_bytes(b"v1 data \x00\x01")
    (dev.data_dir / "sub").mkdir()
    (dev.data_dir / "sub" / "cert.pem").write_text("cert v1")
    before = _tree_bytes(dev.data_dir)

    assert dev.agent().advance().phase == "rebooting"
    # The new version migrates the data on its first boot, then fails its required check.
    first = dev.boot()
    assert first.version == "2"
    (dev.data_dir / "etcd.db").write_bytes(b"v2 migrated")
    (dev.data_dir / "new-file").write_text("only in v2")
    settled = dev.boot_until_settled()

    assert settled.version == "1" and settled.fell_back
    assert _tree_bytes(dev.data_dir) == before
    assert [d.version for d in dev.deployments()] == ["1"]
    state = dev.state()
    assert state["phase"] == "idle"
    assert state["last_result"]["result"] == "rolled_back"
    assert bad in state["denylist"]
    report = state["last_result"]["greenboot"]
    assert "40-app.sh" in json.dumps(report)   # greenboot's record of the failed check travels along
    # Next poll: the failed release is not tried again.
    again = dev.agent().advance(force=True)
    assert again.phase == "idle" and again.target is None
    assert "denylisted" in again.last_check_result
    # A fixed release supersedes it.
    site.publish("3")
    assert dev.agent().advance(force=True).target.version == "3"


def test_barrier_release_is_applied_before_newer_ones(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("2", barrier=True)
    site.publish("3")
    state = dev.agent().advance()
    assert state.target.version == "2"
    dev.boot_until_settled()
    assert dev.agent().advance().phase == "idle"
    state = dev.agent().advance(force=True)
    assert state.target.version == "3"


def test_withdrawn_release_is_skipped_for_the_previous_good_one(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("2")
    site.publish("3")
    site.withdraw("3")
    state = dev.agent().advance()
    assert state.target.version == "2"


def test_release_withdrawn_after_selection_is_never_staged(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("2")
    agent = dev.agent()
    state = agent.check(agent.store.load())[0]
    assert state.phase == "selected"
    site.withdraw("2")
    agent.fetch_catalog(agent.store.load())  # the device learns of the withdrawal
    agent.store.save(agent.store.load())
    state = agent.advance(force=True)
    assert state.phase == "idle" and state.target is None
    assert [d.version for d in dev.deployments()] == ["1"]


def test_phased_rollout_reaches_eager_devices_before_wary_ones(site_and_device: tuple[ReleaseSite, Device]) -> None:
    from datetime import datetime, timedelta, timezone

    from updater import rollout

    site, dev = site_and_device
    start = datetime.now(timezone.utc)
    site.publish("2", rollout_hours=10, now=start)
    machine = (dev.root / "etc/machine-id").read_text().strip()
    position = rollout.position(machine, 0.5)
    before = start + timedelta(hours=10 * position * 0.9)
    after = start + timedelta(hours=10 * position * 1.1 + 0.01)
    assert dev.agent(now=lambda: before).advance(force=True).phase == "idle"
    assert "not yet rolled out" in dev.state()["last_check_result"]
    assert dev.agent(now=lambda: after).advance(force=True).target.version == "2"


def test_reboot_waits_for_the_window_then_reboots_inside_it(site_and_device: tuple[ReleaseSite, Device]) -> None:
    from datetime import datetime, timezone

    site, dev = site_and_device
    dev.config.update(reboot_strategy="window",
                      reboot_window=[{"days": ["Sat", "Sun"], "start_time": "23:30", "length_minutes": 60}])
    dev.write_config()
    site.publish("2")
    friday = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)      # a Friday
    saturday_late = datetime(2026, 11, 28, 23, 45, tzinfo=timezone.utc)
    sunday_early = datetime(2026, 11, 30, 0, 15, tzinfo=timezone.utc)  # Monday 00:15: Sunday's window wraps
    agent = dev.agent(now=lambda: friday)
    state = agent.advance(force=True)
    assert state.phase == "staged" and dev.reboots_requested == 0
    assert agent.next_reboot_slot(state) == "2026-11-28T23:30:00Z"
    assert dev.agent(now=lambda: sunday_early).advance().phase == "rebooting"
    assert dev.agent(now=lambda: saturday_late).reboot_allowed(dev.state_obj())[0] is True


def test_no_reboot_while_pull_or_stage_is_in_flight_even_when_forced(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    from updater.state import IN_FLIGHT, State

    _site, dev = site_and_device
    agent = dev.agent()
    for phase in IN_FLIGHT:
        allowed, why = agent.reboot_allowed(State(phase=phase), force=True)
        assert not allowed and "in flight" in why


def test_offline_bundle_updates_a_device_without_any_network(site_and_device: tuple[ReleaseSite, Device],
                                                             tmp_path) -> None:
    from builder.bundle import make_bundle

    site, dev = site_and_device
    site.publish("1")
    site.publish("2")
    bundle = tmp_path / "update.tar"
    make_bundle(site.release_dir, "stable", bundle, from_version="1")
    dev.config.update(source_dir=None, release_url=["http://127.0.0.1:9/unreachable"])
    dev.write_config()
    done = dev.cli("update", "--from-bundle", str(bundle))
    assert done.returncode == 0, done.stderr
    assert dev.state()["phase"] == "rebooting"
    assert dev.boot_until_settled().version == "2"
    assert dev.cli("reconcile").returncode == 0
    assert dev.state()["last_result"]["result"] == "success"


def test_tampered_bundle_is_refused_and_nothing_is_staged(site_and_device: tuple[ReleaseSite, Device],
                                                          tmp_path) -> None:
    from builder.bundle import make_bundle

    site, dev = site_and_device
    site.publish("2")
    bundle = tmp_path / "update.tar"
    make_bundle(site.release_dir, "stable", bundle)
    data = bytearray(bundle.read_bytes())
    at = data.find(b'"serial"')
    data[at + 10:at + 11] = b"9"
    bundle.write_bytes(bytes(data))
    done = dev.cli("update", "--from-bundle", str(bundle))
    assert done.returncode != 0
    assert "signature" in dev.state()["last_error"] or "signature" in done.stdout
    assert [d.version for d in dev.deployments()] == ["1"]


def test_operator_rollback_after_a_good_update_returns_to_the_previous_deployment_and_its_data(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    dev.data_dir.mkdir(parents=True, exist_ok=True)
    (dev.data_dir / "db").write_bytes(b"v1 data")
    site.publish("2")
    dev.agent().advance()
    dev.boot_until_settled()
    (dev.data_dir / "db").write_bytes(b"v2 data")
    assert dev.agent().advance().last_result["result"] == "success"
    done = dev.cli("rollback")
    assert done.returncode == 0, done.stderr
    assert dev.state()["phase"] == "rebooting"
    assert dev.boot_until_settled().version == "1"
    assert (dev.data_dir / "db").read_bytes() == b"v1 data"
    final = dev.agent().advance()
    assert final.phase == "idle" and final.last_result["result"] == "success"
    assert site.commits["2"] in final.denylist
    assert final.target is None


def test_operator_rollback_before_the_reboot_cancels_the_staged_update(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    dev.config.update(reboot_strategy="manual")
    dev.write_config()
    site.publish("2")
    assert dev.agent().advance().phase == "staged"
    done = dev.cli("rollback")
    assert done.returncode == 0, done.stderr
    assert "cancelled" in done.stdout
    assert [d.version for d in dev.deployments()] == ["1"]
    assert dev.state()["phase"] == "idle"


def test_staged_release_withdrawn_while_waiting_for_the_window_is_unstaged(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    from datetime import datetime, timedelta, timezone

    site, dev = site_and_device
    dev.config.update(reboot_strategy="window",
                      reboot_window=[{"days": ["Sun"], "start_time": "03:00", "length_minutes": 60}])
    dev.write_config()
    site.publish("2")
    monday = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    state = dev.agent(now=lambda: monday).advance()
    assert state.phase == "staged"
    site.withdraw("2")
    later = monday + timedelta(hours=2)
    state = dev.agent(now=lambda: later).advance()
    assert state.phase == "idle" and "withdrawn" in state.last_error
    assert [d.version for d in dev.deployments()] == ["1"]
    from greenboot import bootcount

    assert not bootcount.read(dev.grubenv).armed


def test_default_data_paths_follow_microshift_and_leave_its_own_backups_alone(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    _site, dev = site_and_device
    dev.config.update(data_paths=None)
    dev.write_config()
    assert dev.agent().data_paths() == ()                       # MicroShift not installed
    (dev.root / "usr/bin").mkdir(parents=True)
    (dev.root / "usr/bin/microshift").write_text("")
    assert dev.agent().data_paths() == (dev.root / "var/lib/microshift",)
    health = dev.root / "var/lib/microshift-backups/health.json"
    health.parent.mkdir(parents=True)
    health.write_text('{"health": "healthy", "deployment_id": "x", "boot_id": "y"}')
    assert dev.agent().data_paths() == ()                       # 4.14+ backs itself up per deployment
