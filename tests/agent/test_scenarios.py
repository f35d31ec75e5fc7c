"""End-to-end update scenarios on the simulated device: real sysroot, real GRUB counting, real agent."""

from __future__ import annotations

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
