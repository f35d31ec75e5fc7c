"""The product in a VM: real GRUB, kernel, systemd, ostree, our agent and greenboot, updating and rolling back.

Each test boots a fresh overlay of the v1 disk that ``fieldshift build --image-type qcow2`` made, under
QEMU TCG, and drives it through the root shell on its second serial port. Releases are published by
``builder.publish`` into a release directory of the scenario's own and served from the host.
"""

from __future__ import annotations

import pytest

from tests.vm.lab import Device, Lab, greenboot_verdict

pytestmark = pytest.mark.vm

SETTLE = 600.0


def _green_on(version: str, after_boots: int = 0):  # type: ignore[no-untyped-def]
    def ready(dev: Device) -> bool:
        if dev.boots() <= after_boots:
            return False
        return dev.agent()["booted"]["version"] == version and greenboot_verdict(dev) == "green"

    return ready


def _start_update(dev: Device) -> None:
    # A transient unit, so the update (and the reboot it asks for) does not depend on this shell.
    dev.sh("systemd-run --unit=vm-update --collect fieldshift-agent update")


def test_good_update_is_pulled_as_a_delta_staged_and_boots_green(lab: Lab, device: Device) -> None:
    device.boot()
    device.settle(_green_on("1.0.0"), SETTLE)
    lab.publish("good", "1.0.0")
    lab.publish("good", "2.0.0")
    device.follow(lab.url("good"))
    before = device.boots()
    _start_update(device)

    device.settle(_green_on("2.0.0", after_boots=before), SETTLE)

    status = device.agent()
    assert status["booted"]["version"] == "2.0.0"
    assert status["booted"]["deployment"].startswith(lab.commits["2.0.0"])
    assert any("/good/repo/deltas/" in p for p in lab.server.paths()), "the update did not use the static delta"
    assert device.greenboot()["boot_counter"] is None


def test_bad_update_falls_back_permanently_restores_data_and_is_denylisted(lab: Lab, device: Device) -> None:
    device.boot()
    device.settle(_green_on("1.0.0"), SETTLE)
    device.sh(
        "mkdir -p /var/lib/fieldshift-demo && head -c 262144 /dev/urandom > /var/lib/fieldshift-demo/data.bin"
    )
    data_before = device.sh("sha256sum /var/lib/fieldshift-demo/data.bin").split()[0]
    lab.publish("bad", "1.0.0")
    lab.publish("bad", "3.0.0")
    device.follow(lab.url("bad"))
    before = device.boots()
    _start_update(device)

    # v3 boots red until GRUB's counter runs out (boot_attempts boots), then GRUB boots v1 again.
    def rolled_back(dev: Device) -> bool:
        if dev.boots() < before + lab.boot_attempts + 1:
            return False
        status = dev.agent()
        return status["booted"]["version"] == "1.0.0" and lab.commits["3.0.0"] in status["denylist"]

    device.settle(rolled_back, SETTLE)
    device.settle(_green_on("1.0.0"), SETTLE)

    assert device.sh("sha256sum /var/lib/fieldshift-demo/data.bin").split()[0] == data_before
    gb = device.greenboot()
    assert gb["rollback"] is not None, "greenboot recorded no rollback"
    red_v3 = [b for b in gb["boots"] if b["version"] == "3.0.0" and b["verdict"] == "red"]
    assert len(red_v3) == lab.boot_attempts, gb["boots"]
    deployments = device.agent()["deployments"]
    assert all(not d["deployment"].startswith(lab.commits["3.0.0"]) for d in deployments), deployments
    # Not tried again: another update run leaves the device on v1 with nothing staged.
    device.sh("fieldshift-agent update >/dev/null 2>&1 || true", timeout=300)
    status = device.agent()
    assert status["booted"]["version"] == "1.0.0"
    assert status["pending"] is None
