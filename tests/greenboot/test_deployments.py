"""Finding deployments and the booted one in a real sysroot; /boot made writable only in a private namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from greenboot import ostree
from greenboot.layout import Layout
from tests.sim.firmware import Firmware
from tests.sim.sysroot import Sysroot


def test_status_lists_deployments_in_boot_order_with_versions(base_sysroot: Sysroot) -> None:
    deps = ostree.status(Layout.at(base_sysroot.path))
    assert [(d.index, d.version) for d in deps] == [(0, "2"), (1, "1")]
    assert [d.name for d in deps] == [d.name for d in base_sysroot.deployments()]


def test_status_output_gives_flags_booted_mark_and_whole_version() -> None:
    """The line format of ostree's ot-admin-builtin-status.c, as printed on a device with a staged update."""
    staged, booted, rollback = "c" * 64, "b" * 64, "a" * 64
    text = (
        f"  fieldos {staged}.0 (staged)\n    Version: 3\n    origin refspec: fieldos/x86_64/stable\n"
        f"* fieldos {booted}.1\n    Version: 2.0.1\n    Pinned: yes\n"
        f"  fieldos {rollback}.0 (rollback)\n    origin refspec: fieldos/x86_64/stable\n"
    )
    deps = ostree.parse_status(text)
    assert [(d.index, d.name, d.version, d.flags, d.booted) for d in deps] == [
        (0, f"{staged}.0", "3", ("staged",), False),
        (1, f"{booted}.1", "2.0.1", (), True),
        (2, f"{rollback}.0", "", ("rollback",), False),
    ]
    assert deps[0].staged and deps[0].id == deps[0].name
    assert deps[1].rpm_ostree_id == f"fieldos-{booted}.1"


def test_the_booted_deployment_is_the_one_grub_booted(sysroot: Sysroot) -> None:
    layout = Layout.at(sysroot.path)
    assert ostree.booted_name(layout) == ""
    boot = Firmware(sysroot.path).boot()
    booted = ostree.booted(layout)
    assert booted is not None and (booted.index, booted.version, booted.name) == (0, "2", boot.deployment)
    assert layout.system == sysroot.deployment_dir(sysroot.deployments()[0])


def test_on_a_live_system_the_booted_deployment_is_the_one_mounted_as_root(base_sysroot: Sysroot) -> None:
    v1 = base_sysroot.deployments()[1]
    assert ostree.deployment_at(base_sysroot.path, base_sysroot.deployment_dir(v1)) == v1.name
    assert ostree.deployment_at(base_sysroot.path, base_sysroot.path) == ""


def test_after_undeploy_the_booted_deployment_is_still_known(sysroot: Sysroot, tmp_path: Path) -> None:
    """ostree rewrites ostree/boot.N on undeploy; the booted root stays the same directory."""
    Firmware(sysroot.path).boot()
    layout = Layout.at(sysroot.path)
    name = ostree.booted_name(layout)
    sysroot.undeploy(1)
    assert ostree.booted_name(layout) == name


PRIVATE_REMOUNT = r"""
import json, subprocess, sys
from pathlib import Path
from greenboot import bootmount
from greenboot.grubenv import GrubEnv
from greenboot.layout import Layout

mnt = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], check=True)
def ro():
    return [l.split()[5] for l in open("/proc/self/mountinfo") if l.split()[4] == str(mnt)][0].startswith("ro")
out = {"ro_before": ro()}
try:
    (mnt / "probe").write_text("x")
    out["writable_before"] = True
except OSError:
    out["writable_before"] = False
with bootmount.writable(Layout.at("/"), mnt / "grubenv"):
    out["ro_inside"] = ro()
    GrubEnv(mnt / "grubenv").set(boot_success="1")
out["ro_after"] = ro()
out["values"] = GrubEnv(mnt / "grubenv").read()
print(json.dumps(out))
"""


def test_read_only_boot_is_remounted_rw_only_around_the_write_in_a_private_namespace(tmp_path: Path) -> None:
    mnt = tmp_path / "boot"
    mnt.mkdir()
    # As root a mount namespace is enough; otherwise a user namespace makes us root inside it.
    userns = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    result = subprocess.run(
        ["unshare", *userns, "--mount", "--propagation", "private", sys.executable, "-c", PRIVATE_REMOUNT, str(mnt)],
        capture_output=True, text=True, cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == {"ro_before": True, "writable_before": False, "ro_inside": False, "ro_after": True,
                   "values": {"boot_success": "1"}}
    # the host never saw the mount, let alone a writable one
    assert str(mnt) not in Path("/proc/self/mountinfo").read_text()
