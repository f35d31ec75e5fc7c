"""Shared fixtures for the agent tests: one release site and one base device, cloned per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.sim.device import Device, ReleaseSite

# Deployments the agent makes in temp sysroots must stay deletable (ostree sets the immutable bit on
# deployment roots otherwise); the agent's own ostree calls, in process or in subprocesses, inherit this.
os.environ.setdefault("OSTREE_SYSROOT_DEBUG", "mutable-deployments")


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A site with release 1 built (not published) and a device running 1; copied by each test."""
    base = tmp_path_factory.mktemp("agent-template")
    site = ReleaseSite(base / "site")
    site.commit("1")
    Device.create(base / "device", site)
    return base / "site", base / "device"


@pytest.fixture
def site_and_device(_template: tuple[Path, Path], tmp_path: Path) -> tuple[ReleaseSite, Device]:
    site_src, dev_src = _template
    shutil.copytree(site_src, tmp_path / "site", symlinks=True)
    shutil.copytree(dev_src, tmp_path / "device", symlinks=True)
    site = ReleaseSite.__new__(ReleaseSite)
    site.base = tmp_path / "site"
    from tests.sim.sysroot import Sysroot

    site.build = Sysroot(tmp_path / "site" / "build")
    site.release_dir = site.base / "release"
    site.key = site.base / "keys" / "catalog.key"
    site.pub = site.base / "keys" / "catalog.pub"
    site.commits = {}
    from tests.sim.sysroot import _ostree

    site.commits["1"] = _ostree(["rev-parse", f"--repo={site.build.repo}", "fieldos/x86_64/stable"]).strip()
    device = Device(tmp_path / "device", site)
    device.write_config()
    return site, device
