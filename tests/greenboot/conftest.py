"""Shared fixtures for greenboot tests: a real two-deployment ostree sysroot (built once), script trees, the CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import pytest

from tests.sim.firmware import editenv
from tests.sim.sysroot import Sysroot, clone

CLI = str(Path(sys.executable).parent / "fieldshift-greenboot")


@dataclass
class Cli:
    """Runs the real ``fieldshift-greenboot`` console script against one root."""

    root: Path

    def __call__(self, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        import os

        full_env = dict(os.environ)
        full_env.pop("JOURNAL_STREAM", None)
        full_env.update(env or {})
        return subprocess.run(
            [CLI, "--root", str(self.root), *args], capture_output=True, text=True, env=full_env, timeout=120
        )


def write_script(root: Path, rel: str, body: str, mode: int = 0o755) -> Path:
    """Create a script at ``root/rel`` (bash body, no shebang needed for *.sh)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    path.chmod(mode)
    return path


RED_RECORDER = (
    "# record what the red.d scripts see in grubenv (MicroShift's pre-rollback script reads boot_counter)\n"
    'v=$(grub-editenv "$FIELDSHIFT_GRUBENV" list | grep "^boot_counter=" || echo boot_counter=unset)\n'
    'mkdir -p "$FIELDSHIFT_GREENBOOT_ROOT/var/log"\n'
    'echo "$v" >> "$FIELDSHIFT_GREENBOOT_ROOT/var/log/red.log"\n'
)
GREEN_RECORDER = (
    'mkdir -p "$FIELDSHIFT_GREENBOOT_ROOT/var/log"\n'
    'echo green >> "$FIELDSHIFT_GREENBOOT_ROOT/var/log/green.log"\n'
)


def release_files(healthy: bool) -> Dict[str, str]:
    """Greenboot scripts shipped inside a commit; an unhealthy release has a failing required check."""
    files = {
        "usr/lib/greenboot/check/required.d/10_base.sh": "exit 0\n",
        "usr/lib/greenboot/red.d/50_record_counter.sh": RED_RECORDER,
        "usr/lib/greenboot/green.d/50_record_green.sh": GREEN_RECORDER,
    }
    if not healthy:
        files["usr/lib/greenboot/check/required.d/50_app.sh"] = 'echo "app failed to start"\nexit 1\n'
    return files


@pytest.fixture(scope="session")
def base_sysroot(tmp_path_factory: pytest.TempPathFactory) -> Sysroot:
    """Version 1 (healthy) deployed first, then version 2 (its required check fails) as the default.

    Copied per test, never changed.
    """
    sr = Sysroot.create(tmp_path_factory.mktemp("sysroot") / "root")
    sr.deploy(sr.commit("1", files=release_files(healthy=True)))
    sr.deploy(sr.commit("2", files=release_files(healthy=False)))
    return sr


@pytest.fixture(scope="session")
def single_sysroot(tmp_path_factory: pytest.TempPathFactory) -> Sysroot:
    """Only version 1 (healthy) deployed."""
    sr = Sysroot.create(tmp_path_factory.mktemp("single") / "root")
    sr.deploy(sr.commit("1", files=release_files(healthy=True)))
    return sr


@pytest.fixture
def sysroot(base_sysroot: Sysroot, tmp_path: Path) -> Sysroot:
    """A private copy of the two-deployment sysroot with an empty Fedora-style grubenv."""
    sr = clone(base_sysroot, tmp_path / "root")
    (sr.path / "boot" / "grub2").mkdir(parents=True, exist_ok=True)
    editenv(sr.path / "boot" / "grub2" / "grubenv", "create")
    return sr


@pytest.fixture
def cli(sysroot: Sysroot) -> Cli:
    return Cli(sysroot.path)
