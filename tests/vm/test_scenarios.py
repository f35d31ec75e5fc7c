"""The product in a VM: real GRUB, kernel, systemd, ostree, our agent and greenboot, updating and rolling back.

Each test boots a fresh overlay of the v1 disk that ``fieldshift build --image-type qcow2`` made, under
QEMU TCG, and drives it through the root shell on its virtio console. Releases are published by
``builder.publish`` into a release directory of the scenario's own and served from the host.
"""

from __future__ import annotations

import urllib.parse

import pytest

from tests.faultproxy import Fault, FaultProxy
from tests.vm.lab import Device, Lab, greenboot_verdict
from tests.vm.machine import HOST_FROM_GUEST

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1500)]

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


def _guest_url(proxy: FaultProxy, release_dir: str) -> str:
    """The proxy's address as the guest sees it (QEMU user networking maps the host's loopback)."""
    return f"http://{HOST_FROM_GUEST}:{urllib.parse.urlsplit(proxy.url).port}/{release_dir}"


def _phase(dev: Device) -> str:
    return str(dev.agent()["phase"])


# Known gap, tracked in issue 7 (docs/images.md "Status of the scenarios"): the cuts during the pull and
# after staging pass; the final converge after the cut during finalize has not been seen passing yet.
# It still runs in CI and reports XPASS once it does; non-strict so a run is not red on a known gap.
@pytest.mark.xfail(reason="issue 7: converge after a power cut during finalize not yet seen passing", strict=False)
def test_power_cuts_during_pull_after_staging_and_during_finalize_leave_a_healthy_device_that_converges(
    lab: Lab, device: Device
) -> None:
    lab.publish("power", "1.0.0")
    lab.publish("power", "2.0.0")
    with FaultProxy(lab.server.url) as proxy:
        device.boot()
        device.settle(_green_on("1.0.0"), SETTLE)
        url = _guest_url(proxy, "power")

        # 1. During the pull: the delta part stalls mid-transfer, the plug is pulled while it hangs.
        proxy.add(Fault("stall", pattern=r"/deltas/.*/\d+$", times=1, after_bytes=2048, seconds=120))
        device.follow(url)
        _start_update(device)
        # The superblock came through, so ostree is fetching the (stalled) delta part now.
        device.settle(lambda d: _phase(d) == "selected" and any("superblock" in x.path for x in proxy.log), SETTLE)
        device.vm.power_cut()
        proxy.clear_faults()
        device.boot()
        device.settle(_green_on("1.0.0"), SETTLE)

        # 2. Right after staging: the agent stops itself once "staged" is durable, then the plug is pulled.
        device.sh("systemd-run --unit=vm-stage --collect --setenv=FIELDSHIFT_AGENT_STOP_AT=staged "
                  "fieldshift-agent update")
        device.settle(lambda d: _phase(d) == "staged", SETTLE)
        device.vm.power_cut()
        device.boot()
        device.settle(_green_on("1.0.0"), SETTLE)  # the staged deployment was never finalized

        # 3. During the shutdown that finalizes the staged deployment.
        device.follow(url, reboot_strategy="manual")
        device.sh("fieldshift-agent update >/dev/null 2>&1 || true", timeout=600)
        # The running agent service may hold the lock and finish the staging itself: wait for it.
        device.settle(lambda d: _phase(d) == "staged", SETTLE)
        mark = len(device.vm.console())
        device.sh("systemd-run --unit=vm-reboot --collect systemctl reboot")
        device.vm.wait_console(r"ostree-finalize-staged|Finalizing staged deployment", 180, since=mark)
        device.vm.power_cut()
        device.boot()
        device.settle(lambda d: greenboot_verdict(d) == "green", SETTLE)  # whichever deployment booted: healthy

        # Converges: the agent finishes the update from wherever the cuts left it (reconcile may already
        # have staged it again, waiting for the manual reboot step 3 asked for).
        device.follow(url)
        before = device.boots()
        on_new = device.agent()["booted"]["version"] == "2.0.0"
        if not on_new:
            device.sh("systemd-run --unit=vm-converge --collect /bin/sh -c "
                      "'fieldshift-agent update; fieldshift-agent reboot'")
        device.settle(_green_on("2.0.0", after_boots=0 if on_new else before), SETTLE)
    assert device.agent()["booted"]["version"] == "2.0.0"


def test_update_over_a_slow_link_that_cuts_connections_completes_with_bytes_close_to_the_delta(
    lab: Lab, device: Device
) -> None:
    lab.publish("link", "1.0.0")
    result = lab.publish("link", "2.0.0")
    delta = sum(d.size for d in result.deltas if d.from_commit == lab.commits["1.0.0"])
    assert delta > 0
    with FaultProxy(lab.server.url) as proxy:
        device.boot()
        device.settle(_green_on("1.0.0"), SETTLE)
        # ~300 kbit/s for everything, and the first two delta part transfers are cut part way.
        proxy.add(Fault("reset", pattern=r"/deltas/.*/\d+$", times=2, after_bytes=max(1, delta // 3)))
        proxy.add(Fault("throttle", times=-1, rate=40_000))
        device.follow(_guest_url(proxy, "link"), low_speed_limit_bytes=1000,
                      low_speed_time_seconds=10, pull_retries=5)
        before = device.boots()
        _start_update(device)
        device.settle(_green_on("2.0.0", after_boots=before), SETTLE)
        proxy.settle()
        moved = sum(d.delivered for d in proxy.log if "/link/repo/" in d.path)
        hits = proxy.faults_hit()
        loose = [d.path for d in proxy.log if "/objects/" in d.path]
    assert [h.fault for h in hits if h.fault == "reset"] == ["reset", "reset"], hits
    print(f"\n[vm tier] bad link: delta {delta} B, repo bytes moved {moved} B ({moved / delta:.2f}x)")
    assert not loose, f"objects fetched loose next to the delta: {loose[:5]}"
    # The delta once, plus at most what each cut delivered before the reset (a reset can lose it).
    cut = sum(h.delivered for h in hits if h.fault == "reset")
    assert delta <= moved <= delta + cut + 4096, f"moved {moved} B for a {delta} B delta ({cut} B cut)"
