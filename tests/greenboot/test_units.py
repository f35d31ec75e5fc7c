"""Shipped systemd units: valid for systemd, greenboot's ordering, private /boot remounts, install into images."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from greenboot import bootmount, config, install, status
from greenboot.layout import Layout
from tests.greenboot.conftest import CLI, Cli


def unit(name: str) -> dict[str, list[str]]:
    """``Key -> [values]`` of a shipped unit file (all sections; systemd allows repeated keys)."""
    values: dict[str, list[str]] = {}
    for line in (install.UNITS_DIR / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).extend(value.split())
    return values


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree with the host's systemd units, our binary at /usr/bin and everything installed."""
    root = tmp_path_factory.mktemp("image")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(CLI, root / "usr/bin/fieldshift-greenboot")
    install.install_into(root, grub_menu=True, microshift=True)
    return root


def test_every_unit_passes_systemd_analyze_verify(image_root: Path) -> None:
    names = [p.name for p in install.unit_files(grub_menu=True)]
    result = subprocess.run(["systemd-analyze", "verify", f"--root={image_root}", *names],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_would_catch_a_missing_binary(image_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "root"
    shutil.copytree(image_root, broken, symlinks=True)
    (broken / "usr/bin/fieldshift-greenboot").unlink()
    result = subprocess.run(["systemd-analyze", "verify", f"--root={broken}", "greenboot-healthcheck.service"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "not executable" in result.stderr


def test_health_check_gates_boot_complete_and_fails_into_redboot() -> None:
    u = unit("greenboot-healthcheck.service")
    assert u["Before"] == ["boot-complete.target"]
    assert u["RequiredBy"] == ["boot-complete.target"]
    assert u["OnFailure"] == ["redboot.target"]
    assert u["ExecStart"] == ["/usr/bin/fieldshift-greenboot", "check"]
    assert unit("redboot.target")["Conflicts"] == ["boot-complete.target"]
    assert unit("redboot-task-runner.service")["WantedBy"] == ["redboot.target"]
    reboot = unit("redboot-auto-reboot.service")
    assert reboot["SuccessAction"] == ["reboot"] and reboot["After"] == ["redboot-task-runner.service"]
    assert reboot["ExecStart"][-1] == "reboot-check"


def test_units_with_a_success_action_go_inactive_so_systemd_takes_it() -> None:
    # systemd runs SuccessAction= when the unit becomes inactive; RemainAfterExit=yes keeps a oneshot
    # "active (exited)" forever, and the red boot never reboots (seen in the VM tier).
    with_action = [p.name for p in install.unit_files(grub_menu=True) if "SuccessAction" in unit(p.name)]
    assert "redboot-auto-reboot.service" in with_action
    for name in with_action:
        assert unit(name).get("RemainAfterExit", ["no"]) == ["no"], name


def test_fallback_check_runs_before_the_health_check_and_success_marking() -> None:
    u = unit("greenboot-rpm-ostree-grub2-check-fallback.service")
    assert set(u["Before"]) == {"greenboot-healthcheck.service", "greenboot-grub2-set-success.service"}
    assert u["RequiredBy"] == ["greenboot-healthcheck.service"]
    success = unit("greenboot-grub2-set-success.service")
    assert success["After"] == ["boot-complete.target"] and success["Requires"] == ["boot-complete.target"]


def test_units_that_write_grubenv_remount_boot_only_privately() -> None:
    for path in install.unit_files(grub_menu=True):
        u = unit(path.name)
        verbs = {*u.get("ExecStart", [""])[-1:], *u.get("ExecStop", [""])[-1:]}
        if verbs & {"fallback-check", "green", "arm", "grub-menu"}:
            assert u.get("PrivateMounts") == ["yes"], path.name


def test_grub_menu_unit_runs_after_ostree_finalizes_the_staged_deployment() -> None:
    u = unit("fieldshift-grub-menu.service")
    # stop order is the reverse of start order: ordered Before= it, we stop after it finalized
    assert "ostree-finalize-staged.service" in u["Before"]
    assert u["ExecStop"] == ["/usr/bin/fieldshift-greenboot", "grub-menu"]
    assert u["WantedBy"] == ["ostree-finalize-staged.service"]


def test_install_enables_like_systemctl_and_masks_what_defeats_counting(image_root: Path) -> None:
    system = image_root / "etc/systemd/system"
    assert os.readlink(system / "boot-complete.target.requires/greenboot-healthcheck.service") == (
        "../greenboot-healthcheck.service"
    )
    fallback = "greenboot-rpm-ostree-grub2-check-fallback.service"
    assert (system / f"greenboot-healthcheck.service.requires/{fallback}").exists()
    assert (system / "redboot.target.wants/redboot-auto-reboot.service").exists()
    assert (system / "ostree-finalize-staged.service.wants/fieldshift-grub-menu.service").exists()
    assert os.readlink(system / "greenboot-task-runner.service") == "/dev/null"
    assert os.readlink(image_root / "etc/systemd/user/grub-boot-success.timer") == "/dev/null"
    assert (image_root / install.MICROSHIFT_CHECK).read_text().startswith("#!/bin/bash")


def test_install_without_grub_menu_leaves_the_fedora_grub_alone(tmp_path: Path) -> None:
    written = install.install_into(tmp_path)
    assert not any(p.name == install.GRUB_MENU_UNIT for p in written)
    assert not (tmp_path / install.MICROSHIFT_CHECK).exists()


def test_status_warns_while_grub_boot_success_timer_is_enabled(tmp_path: Path) -> None:
    user = tmp_path / "usr/lib/systemd/user"
    (user / "timers.target.wants").mkdir(parents=True)
    (user / "grub-boot-success.timer").write_text("[Timer]\nOnActiveSec=2min\n")
    os.symlink("../grub-boot-success.timer", user / "timers.target.wants/grub-boot-success.timer")
    result = Cli(tmp_path)("status")
    assert "WARNING: grub-boot-success.timer is enabled" in result.stdout
    install.install_into(tmp_path)
    assert not status.boot_success_timer_enabled(Layout.at(tmp_path))
    assert "grub-boot-success.timer" not in Cli(tmp_path)("status").stdout
    assert status.collect(Layout.at(tmp_path), config.load(tmp_path)).warnings[0].startswith("no grubenv")


MOUNTINFO = """\
22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
35 22 8:1 / /boot ro,relatime shared:15 - ext4 /dev/sda1 ro
36 35 8:3 / /boot/efi rw,relatime shared:16 - vfat /dev/sda3 rw
40 22 0:5 / /my\\040boot ro,relatime - tmpfs tmpfs ro
"""


def test_read_only_boot_is_remounted_in_a_private_namespace_only() -> None:
    step = bootmount.plan(MOUNTINFO, "/boot/grub2/grubenv", own_namespace=False)
    assert step == bootmount.RemountPlan("/boot", read_only=True, unshare=True)
    assert bootmount.plan(MOUNTINFO, "/boot/grub2/grubenv", own_namespace=True).unshare is False


def test_writable_mounts_and_nested_mounts_need_nothing() -> None:
    assert not bootmount.plan(MOUNTINFO, "/boot/efi/EFI/fedora/grubenv", own_namespace=False).needed
    assert not bootmount.plan(MOUNTINFO, "/var/lib/x", own_namespace=False).needed
    assert bootmount.plan(MOUNTINFO, "/my boot/grubenv", own_namespace=True).mountpoint == "/my boot"


def test_under_root_nothing_is_ever_remounted(tmp_path: Path) -> None:
    target = tmp_path / "boot/grub2/grubenv"
    with bootmount.writable(Layout.at(tmp_path), target):
        pass  # no mount call: a --root tree is never remounted (would fail loudly otherwise)
    real = Path("/proc/self/mountinfo").read_text()
    assert bootmount.plan(real, "/", own_namespace=True) is not None
