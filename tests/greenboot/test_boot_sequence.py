"""Whole boot sequences on a real ostree sysroot: the simulated GRUB boots, the real CLI judges each boot.

Each "boot" is what systemd would run, in unit order: fallback-check, check, then green or
red + reboot-check. Version 1 is healthy; version 2 ships a failing required check.
"""

from __future__ import annotations

import json
from pathlib import Path

from greenboot import bootcount, grubmenu, report
from tests.greenboot.conftest import Cli
from tests.importtime import imported
from tests.sim.firmware import Boot, Firmware, editenv, editenv_list
from tests.sim.sysroot import Sysroot


def boot_and_judge(fw: Firmware, cli: Cli) -> tuple[Boot, int, int]:
    """Boot once and run the units' verbs; return (boot, check exit code, reboot-check exit code or -1)."""
    boot = fw.boot()
    assert cli("fallback-check").returncode == 0
    check = cli("check").returncode
    if check == 0:
        assert cli("green").returncode == 0
        return boot, check, -1
    assert cli("red").returncode == 0
    return boot, check, cli("reboot-check").returncode


def red_log(sysroot: Sysroot) -> list[str]:
    path = sysroot.path / "var" / "log" / "red.log"
    return path.read_text().splitlines() if path.exists() else []


def test_broken_update_is_tried_three_times_then_rolled_back_permanently(sysroot: Sysroot, cli: Cli) -> None:
    grubenv = sysroot.path / "boot" / "grub2" / "grubenv"
    fw = Firmware(sysroot.path)
    assert [d.version for d in sysroot.deployments()] == ["2", "1"]

    # staging armed the counter (GREENBOOT_MAX_BOOT_ATTEMPTS default 3)
    assert cli("arm").returncode == 0
    assert editenv_list(grubenv) == {"boot_counter": "3", "boot_success": "0"}

    for attempt, counter in enumerate(["2", "1", "0"], start=1):
        boot, check, reboot = boot_and_judge(fw, cli)
        assert (boot.index, boot.version, boot.boot_counter) == (0, "2", counter), f"attempt {attempt}"
        assert check == 1, f"attempt {attempt} must be red"
        assert reboot == 0, f"attempt {attempt}: a reboot can still help"
        assert red_log(sysroot)[-1] == f"boot_counter={counter}"
    # MicroShift's pre-rollback script relies on this: the last failing boot shows boot_counter=0
    assert red_log(sysroot) == ["boot_counter=2", "boot_counter=1", "boot_counter=0"]

    # 4th boot: GRUB gives up on entry 0 and boots the rollback entry
    boot = fw.boot()
    assert (boot.index, boot.version, boot.boot_counter) == (1, "1", "-1")
    result = cli("--json", "fallback-check")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["fallback"] is True
    assert outcome["method"] == "ostree undeploy"
    # the rollback is permanent and the counter is gone
    assert [d.version for d in sysroot.deployments()] == ["1"]
    assert "boot_counter" not in editenv_list(grubenv)
    record = report.last_rollback(sysroot.path)
    assert record is not None
    assert record.failed is not None and record.failed["version"] == "2"
    assert record.running is not None and record.running["version"] == "1"
    assert record.failed_checks == ["50_app.sh"]
    assert record.boot_id == boot.boot_id
    assert "FALLBACK BOOT DETECTED" in result.stderr

    # version 1 is healthy: green, success recorded
    assert cli("check").returncode == 0
    assert cli("green").returncode == 0
    assert editenv_list(grubenv) == {"boot_success": "1"}
    assert (sysroot.path / "var" / "log" / "green.log").read_text() == "green\n"

    # and it stays: the next boot is version 1 from entry 0, with no counting
    boot = fw.boot()
    assert (boot.index, boot.version, boot.boot_counter) == (0, "1", None)
    reports = report.reports(sysroot.path)
    assert [r.verdict for r in reports] == ["red", "red", "red", "green"]
    assert [r.boot_counter for r in reports[:4]] == ["2", "1", "0", "-1"]
    assert reports[3].fallback is True
    failed = [s for s in reports[0].phases["check"].results if s.name == "50_app.sh"][0]
    assert (failed.status, failed.exit_code, failed.output) == ("failed", 1, ("app failed to start",))
    assert reports[0].deployment is not None and reports[0].deployment["version"] == "2"
    assert [s.name for s in reports[0].phases["red"].results] == ["50_record_counter.sh"]


def test_fallback_check_on_a_normal_boot_changes_nothing(sysroot: Sysroot, cli: Cli) -> None:
    grubenv = sysroot.path / "boot" / "grub2" / "grubenv"
    cli("arm")
    Firmware(sysroot.path).boot()
    before = grubenv.read_bytes()
    result = cli("fallback-check")
    assert result.returncode == 0 and "not a fallback boot" in result.stdout
    assert grubenv.read_bytes() == before
    assert [d.version for d in sysroot.deployments()] == ["2", "1"]
    assert report.last_rollback(sysroot.path) is None


def test_healthy_update_is_marked_green_and_counting_stops(base_sysroot: Sysroot, tmp_path: Path) -> None:
    from tests.greenboot.conftest import release_files
    from tests.sim.sysroot import clone

    sysroot = clone(base_sysroot, tmp_path / "root")
    sysroot.deploy(sysroot.commit("3", files=release_files(healthy=True)))
    grubenv = sysroot.path / "boot" / "grub" / "grubenv"  # Debian path this time
    grubenv.parent.mkdir(parents=True)
    bootcount.arm(grubenv, 3)
    cli = Cli(sysroot.path)
    boot, check, _ = boot_and_judge(Firmware(sysroot.path), cli)
    assert (boot.index, boot.version, check) == (0, "3", 0)
    assert editenv_list(grubenv) == {"boot_success": "1"}
    assert [d.version for d in sysroot.deployments()] == ["3", "2"]
    status = json.loads(cli("--json", "status").stdout)
    assert status["verdict"] == "green" and status["attempts_left"] is None
    assert status["latest_boot"]["deployment"]["version"] == "3"


def test_fallback_check_run_twice_does_not_swap_deployments_back(sysroot: Sysroot, cli: Cli) -> None:
    grubenv = sysroot.path / "boot" / "grub2" / "grubenv"
    editenv(grubenv, "set", "boot_counter=0", "boot_success=0")
    fw = Firmware(sysroot.path)
    assert fw.boot().fell_back
    assert cli("fallback-check").returncode == 0
    # a power cut before the counter was cleared: grubenv still says -1 on the next run
    editenv(grubenv, "set", "boot_counter=-1")
    first = report.last_rollback(sysroot.path)
    result = cli("--json", "fallback-check")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["method"] == "none"
    assert [d.version for d in sysroot.deployments()] == ["1"]
    assert report.last_rollback(sysroot.path) == first
    assert "boot_counter" not in editenv_list(grubenv)


def test_unhealthy_fallback_deployment_is_not_rebooted_again(sysroot: Sysroot, cli: Cli) -> None:
    grubenv = sysroot.path / "boot" / "grub2" / "grubenv"
    # break version 1 too, in /etc of its deployment (which the booted system reads)
    v1 = next(d for d in sysroot.deployments() if d.version == "1")
    broken = sysroot.deployment_dir(v1) / "etc" / "greenboot" / "check" / "required.d" / "90_also_broken.sh"
    broken.parent.mkdir(parents=True)
    broken.write_text("exit 7\n")
    editenv(grubenv, "set", "boot_counter=0", "boot_success=0")
    boot, check, reboot = boot_and_judge(Firmware(sysroot.path), cli)
    assert boot.fell_back and check == 1
    assert reboot == 2
    out = cli("reboot-check")
    assert "Manual intervention needed" in out.stdout
    assert "previous deployment fails its health checks too" in out.stdout


def test_unhealthy_system_without_a_counter_is_not_rebooted(sysroot: Sysroot, cli: Cli) -> None:
    Firmware(sysroot.path).boot()  # no counter armed: version 2 is booted as a plain default
    assert cli("check").returncode == 1
    result = cli("reboot-check")
    assert result.returncode == 1
    assert "boot_counter is unset" in result.stdout and "Manual intervention needed" in result.stdout


def test_unhealthy_system_with_a_single_boot_entry_is_not_rebooted(single_sysroot: Sysroot, tmp_path: Path) -> None:
    from tests.sim.sysroot import clone

    sysroot = clone(single_sysroot, tmp_path / "root")
    grubenv = sysroot.path / "boot" / "grub2" / "grubenv"
    grubenv.parent.mkdir(parents=True)
    bootcount.arm(grubenv, 2)
    (sysroot.path / "etc" / "greenboot" / "check" / "required.d").mkdir(parents=True)
    Firmware(sysroot.path).boot()
    v1 = sysroot.deployments()[0]
    bad = sysroot.deployment_dir(v1) / "etc" / "greenboot" / "check" / "required.d" / "90_bad.sh"
    bad.parent.mkdir(parents=True)
    bad.write_text("exit 1\n")
    cli = Cli(sysroot.path)
    assert cli("check").returncode == 1
    result = cli("reboot-check")
    assert result.returncode == 3
    assert "entry count is 1" in result.stdout


def test_debian_generated_menu_goes_through_the_same_sequence(sysroot: Sysroot, cli: Cli) -> None:
    """GRUB without blscfg: real GRUB (grub-emu) runs the grub.cfg our generator wrote, counting included."""
    grubenv = sysroot.path / "boot" / "grub" / "grubenv"
    grubenv.parent.mkdir(parents=True)
    (sysroot.path / "boot" / "grub2" / "grubenv").unlink()
    (sysroot.path / "boot" / "grub2").rmdir()
    sysroot.set_bootloader("none")  # what Debian images configure: ostree must not run grub-mkconfig
    menu = sysroot.path / "boot" / "grub" / "grub.cfg"
    assert cli("grub-menu").returncode == 0
    fw = Firmware(sysroot.path, grubenv=grubenv, menu=menu, engine="grub-emu")
    assert [e.title for e in fw.entries()] == ["Field OS 2 (ostree:0)", "Field OS 1 (ostree:1)"]
    assert cli("arm", "2").returncode == 0
    for counter in ("1", "0"):
        boot, check, reboot = boot_and_judge(fw, cli)
        assert (boot.index, boot.version, boot.boot_counter, check, reboot) == (0, "2", counter, 1, 0)
    boot, check, _ = boot_and_judge(fw, cli)
    assert (boot.index, boot.version, check) == (1, "1", 0)
    # the fallback rewrote the menu: version 1 is now entry 0 and the only entry
    assert [e.title for e in fw.entries()] == ["Field OS 1 (ostree:0)"]
    assert grubmenu.generated_menu(cli_layout(sysroot)) == menu
    boot = fw.boot()
    assert (boot.index, boot.version, boot.boot_counter) == (0, "1", None)


def cli_layout(sysroot: Sysroot):
    from greenboot.layout import Layout

    return Layout.at(sysroot.path)


def test_status_and_motd_show_attempts_left_and_the_rollback(sysroot: Sysroot, cli: Cli) -> None:
    fw = Firmware(sysroot.path)
    cli("arm", "2")
    boot_and_judge(fw, cli)
    motd = (sysroot.path / "run" / "motd.d" / "boot-status").read_text()
    assert "Boot status: RED" in motd
    assert "Boot attempts left: 1 of 3" in motd
    assert "50_app.sh: failed (exit code 1)" in motd
    boot_and_judge(fw, cli)
    boot_and_judge(fw, cli)  # fallback boot, version 1 green
    motd = (sysroot.path / "run" / "motd.d" / "boot-status").read_text()
    assert "Boot status: GREEN" in motd
    assert "ROLLED BACK" in motd and "2 (" in motd
    text = cli("status").stdout
    assert "ROLLED BACK" in text
    data = json.loads(cli("--json", "status").stdout)
    assert data["rollback"]["failed_deployment"]["version"] == "2"
    assert data["rollback"]["failed_checks"] == ["50_app.sh"]
    assert [(b["version"], b["boot_counter"], b["verdict"], b["fallback"]) for b in data["boots"]] == [
        ("2", "1", "red", False),
        ("2", "0", "red", False),
        ("1", "-1", "green", True),
    ]
    assert "Last 3 boots:" in text and "counter=0   red (50_app.sh)" in text


def test_fallback_check_on_a_normal_boot_reads_grubenv_and_stops(sysroot: Sysroot, cli: Cli) -> None:
    """It runs first on every boot: on a normal one it must not load the rest of greenboot (each module
    costs boot time on a slow core); on a fallback boot it does the full job."""
    fw = Firmware(sysroot.path)
    assert cli("arm").returncode == 0  # three attempts
    assert fw.boot().boot_counter == "2"  # a normal boot of the new deployment
    normal = cli("--json", "fallback-check", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert normal.returncode == 0, normal.stderr
    assert json.loads(normal.stdout[normal.stdout.index("{"):]) == {"fallback": False, "method": "none", "record": None}
    heavy = {"greenboot.healthcheck", "greenboot.ostree", "greenboot.report", "greenboot.scripts", "subprocess"}
    assert not heavy & imported(normal.stderr), sorted(heavy & imported(normal.stderr))

    fw.boot()
    fw.boot()
    boot = fw.boot()  # counter exhausted: GRUB falls back
    assert boot.boot_counter == "-1"
    fallen = cli("--json", "fallback-check", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert fallen.returncode == 0, fallen.stderr
    assert json.loads(fallen.stdout[fallen.stdout.index("{"):])["fallback"] is True
    assert {"greenboot.healthcheck", "greenboot.ostree", "greenboot.report"} <= imported(fallen.stderr)
