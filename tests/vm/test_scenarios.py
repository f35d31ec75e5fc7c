"""The product in a VM: real GRUB, kernel, systemd, ostree, our agent and greenboot, updating and rolling back.

Each test boots a fresh overlay of the v1 disk that ``fieldshift build --image-type qcow2`` made, under
QEMU TCG, and drives it through the root shell on its virtio console. Releases are published by
``builder.publish`` into a release directory of the scenario's own and served from the host.
"""

from __future__ import annotations

import urllib.parse
from typing import Callable

import pytest

from tests.faultproxy import Fault, FaultProxy
from tests.vm.lab import Device, Lab, greenboot_verdict
from tests.vm.machine import HOST_FROM_GUEST, MachineError

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1500)]

# With ``-n 2 --dist loadgroup`` (.ci/run) the two groups run side by side; each pairs a long scenario
# with a short one (alone, with two vCPUs: good 129 s + power cuts 325 s, bad 260 s + bad link 120 s).
PAIR_A = pytest.mark.xdist_group("vm-a")
PAIR_B = pytest.mark.xdist_group("vm-b")

SETTLE = 600.0


def _green_on(version: str, after_boots: int = 0) -> Callable[[Device], bool]:
    def ready(dev: Device) -> bool:
        if dev.boots() <= after_boots:
            return False
        # The verdict first: while the boot's checks still run, the poll costs the guest one small
        # Python process instead of two (the agent's status is the dearer one).
        return greenboot_verdict(dev) == "green" and dev.agent()["booted"]["version"] == version

    return ready


def _diagnose(dev: Device) -> str:
    """What the agent, ostree and grubenv say now (for a failure message); never raises."""
    try:
        return dev.sh("fieldshift-agent status --json; ostree admin status; grep -a boot_ /boot/grub*/grubenv; "
                      "ls -l /var/lib/fieldshift/agent/requests; "
                      "ps -eo pid,ppid,stat,wchan:24,etime,args | grep -i '[f]ieldshift'; "
                      "journalctl -b -o cat -u 'fieldshift-agent*' -u ostree-finalize-staged -n 40 --no-pager",
                      timeout=120, check=False)
    except Exception as err:  # noqa: BLE001 - diagnostics only
        return f"(no diagnostics: {err})"


def _settle(dev: Device, predicate: Callable[[Device], bool], what: str) -> None:
    try:
        dev.settle(predicate, SETTLE)
    except MachineError as err:
        message = f"{what}: {err}\n--- device state ---\n{_diagnose(dev)}"
        # Also next to the console log, where it outlives the pytest report.
        (dev.vm.workdir / "failure.txt").write_text(message + "\n")
        raise MachineError(message) from None


def _start_update(dev: Device) -> None:
    # A transient unit, so the update (and the reboot it asks for) does not depend on this shell.
    dev.sh("systemd-run --unit=vm-update --collect fieldshift-agent update")


@PAIR_A
def test_good_update_is_pulled_as_a_delta_staged_and_boots_green(lab: Lab, device: Device) -> None:
    device.boot()
    _settle(device, _green_on("1.0.0"), "v1 green")
    lab.publish("good", "1.0.0")
    lab.publish("good", "2.0.0")
    device.follow(lab.url("good"))
    before = device.boots()
    _start_update(device)

    _settle(device, _green_on("2.0.0", after_boots=before), "green on 2.0.0 after the update")

    status = device.agent()
    assert status["booted"]["version"] == "2.0.0"
    assert status["booted"]["deployment"].startswith(lab.commits["2.0.0"])
    assert any("/good/repo/deltas/" in p for p in lab.server.paths()), "the update did not use the static delta"
    assert device.greenboot()["boot_counter"] is None


@PAIR_B
def test_bad_update_falls_back_permanently_restores_data_and_is_denylisted(lab: Lab, device: Device) -> None:
    device.boot()
    _settle(device, _green_on("1.0.0"), "v1 green")
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

    _settle(device, rolled_back, "3.0.0 tried, fallen back to 1.0.0 and denylisted")
    _settle(device, _green_on("1.0.0"), "green on 1.0.0 after the rollback")

    assert device.sh("sha256sum /var/lib/fieldshift-demo/data.bin").split()[0] == data_before
    gb = device.greenboot()
    assert gb["rollback"] is not None, "greenboot recorded no rollback"
    red_v3 = [b for b in gb["boots"] if b["version"] == "3.0.0" and b["verdict"] == "red"]
    assert len(red_v3) == lab.boot_attempts, gb["boots"]
    deployments = device.agent()["deployments"]
    assert all(not d["deployment"].startswith(lab.commits["3.0.0"]) for d in deployments), deployments
    # Not tried again: an update the service runs (a fresh catalog check) leaves v1 with nothing staged.
    checked = device.agent()["last_check"]
    device.sh("fieldshift-agent update")
    _settle(device, lambda d: d.agent()["last_check"] != checked
            and not d.sh("ls /var/lib/fieldshift/agent/requests").strip(), "the update request was not served")
    status = device.agent()
    assert status["booted"]["version"] == "1.0.0"
    assert status["pending"] is None and status["target"] is None and status["phase"] == "idle", status


def _guest_url(proxy: FaultProxy, release_dir: str) -> str:
    """The proxy's address as the guest sees it (QEMU user networking maps the host's loopback)."""
    return f"http://{HOST_FROM_GUEST}:{urllib.parse.urlsplit(proxy.url).port}/{release_dir}"


def _phase(dev: Device) -> str:
    return str(dev.agent()["phase"])


@PAIR_A
def test_power_cuts_during_pull_after_staging_and_during_finalize_leave_a_healthy_device_that_converges(
    lab: Lab, device: Device, vm_note: Callable[[str], None]
) -> None:
    lab.publish("power", "1.0.0")
    lab.publish("power", "2.0.0")
    with FaultProxy(lab.server.url) as proxy:
        device.boot()
        _settle(device, _green_on("1.0.0"), "first boot")
        url = _guest_url(proxy, "power")
        # The agent service does the work (CLI commands are requests to it); strategy manual until the
        # end, so the service never reboots on its own and each cut lands where the test puts it.
        device.follow(url, reboot_strategy="manual")

        # 1. During the pull: every delta part transfer stalls after 2 KiB; the plug is pulled while it hangs.
        proxy.add(Fault("stall", pattern=r"/deltas/.*/\d+$", times=-1, after_bytes=2048, seconds=600))
        _start_update(device)
        # The superblock came through, so the (stalled) delta parts are being fetched now.
        _settle(device, lambda d: _phase(d) == "selected" and any("superblock" in x.path for x in proxy.log),
                "cut 1: the pull never reached the delta parts")
        device.vm.power_cut()
        proxy.clear_faults()
        device.boot()
        _settle(device, _green_on("1.0.0"), "cut 1: no healthy boot")

        # 2. Right after staging: the service resumes the pull by itself and stages; the update then
        # waits for the manual reboot with the staged deployment only in memory until shutdown.
        _settle(device, lambda d: _phase(d) == "staged", "cut 2: the service did not resume and stage")
        device.vm.power_cut()
        device.boot()
        _settle(device, _green_on("1.0.0"), "cut 2: no healthy boot")  # the staged deployment was lost

        # 3. During the shutdown that finalizes it: the service stages again (the lost deployment is
        # noticed at boot), the operator allows the reboot, the plug is pulled while ostree finalizes.
        _settle(device, lambda d: _phase(d) == "staged" and d.agent()["pending"] is not None,
                "cut 3: the service did not stage the lost deployment again")
        mark = len(device.vm.console())
        device.sh("systemd-run --unit=vm-reboot --collect fieldshift-agent reboot")
        device.vm.wait_console(r"OSTree Finalize Staged Deployment|ostree-finalize-staged\.service|"
                               r"Finalizing staged deployment", 300, since=mark)
        device.vm.power_cut()
        device.boot()
        _settle(device, lambda d: greenboot_verdict(d) == "green", "cut 3: no healthy boot")
        after_cut3 = device.agent()["booted"]["version"]

        # Converges: back to the image's reboot strategy (immediate); a kick does what the timer would.
        device.follow(url)
        before = device.boots()
        if after_cut3 != "2.0.0":
            _start_update(device)
        _settle(device, _green_on("2.0.0", after_boots=0 if after_cut3 == "2.0.0" else before),
                f"converge (cut 3 left {after_cut3} booted)")
        _settle(device, lambda d: _phase(d) == "idle", "converge: the agent did not confirm the update")

    status = device.agent()
    assert status["booted"]["deployment"].startswith(lab.commits["2.0.0"]), status
    assert status["last_result"]["result"] == "success" and status["last_result"]["version"] == "2.0.0", status
    assert status["pending"] is None, status
    assert [d["version"] for d in status["deployments"]] == ["2.0.0", "1.0.0"], status["deployments"]
    assert device.greenboot()["boot_counter"] is None
    vm_note(f"power cuts: cut 3 left {after_cut3} booted")


@PAIR_B
def test_update_over_a_slow_link_that_cuts_connections_completes_with_bytes_close_to_the_delta(
    lab: Lab, device: Device, vm_note: Callable[[str], None]
) -> None:
    lab.publish("link", "1.0.0")
    result = lab.publish("link", "2.0.0")
    delta = sum(d.size for d in result.deltas if d.from_commit == lab.commits["1.0.0"])
    assert delta > 0
    with FaultProxy(lab.server.url) as proxy:
        device.boot()
        _settle(device, _green_on("1.0.0"), "v1 green")
        # ~300 kbit/s for everything, and the first two delta part transfers are cut part way.
        proxy.add(Fault("reset", pattern=r"/deltas/.*/\d+$", times=2, after_bytes=max(1, delta // 3)))
        proxy.add(Fault("throttle", times=-1, rate=40_000))
        device.follow(_guest_url(proxy, "link"), low_speed_limit_bytes=1000,
                      low_speed_time_seconds=10, pull_retries=5)
        before = device.boots()
        _start_update(device)
        _settle(device, _green_on("2.0.0", after_boots=before), "green on 2.0.0 behind the bad link")
        proxy.settle()
        moved = sum(d.delivered for d in proxy.log if "/link/repo/" in d.path)
        hits = proxy.faults_hit()
        loose = [d.path for d in proxy.log if "/objects/" in d.path]
    assert [h.fault for h in hits if h.fault == "reset"] == ["reset", "reset"], hits
    vm_note(f"bad link: delta {delta} B, repo bytes moved {moved} B ({moved / delta:.2f}x)")
    assert not loose, f"objects fetched loose next to the delta: {loose[:5]}"
    # The delta once, plus at most what each cut delivered before the reset (a reset can lose it).
    cut = sum(h.delivered for h in hits if h.fault == "reset")
    assert delta <= moved <= delta + cut + 4096, f"moved {moved} B for a {delta} B delta ({cut} B cut)"
