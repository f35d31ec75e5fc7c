"""Downloads through a misbehaving network: throttled, stalled, reset and truncated responses.

The agent talks to a real static server through :mod:`tests.faultproxy`; the proxy's log proves that
the download finished, used the static delta from the running commit, and that no file was delivered
in full twice.
"""

from __future__ import annotations

import base64
import os
import re

import pytest

from tests.faultproxy import Fault, FaultProxy
from tests.httpserve import StaticServer
from tests.sim.device import Device, ReleaseSite

PART = r"/repo/deltas/.+/\d+$"


@pytest.fixture
def served(site_and_device: tuple[ReleaseSite, Device]):
    site, dev = site_and_device
    site.publish("1")
    site.commit("2", payload=base64.b64encode(os.urandom(900_000)).decode())
    site.publish("2")
    with StaticServer(site.release_dir) as server, FaultProxy(server.url) as proxy:
        dev.config.update(release_url=[proxy.url], source_dir=None, low_speed_limit_bytes=20_000,
                          low_speed_time_seconds=2, pull_retries=0)
        dev.write_config()
        yield site, dev, server, proxy


def _drive_download(dev: Device, attempts: int = 6) -> list[str]:
    errors = []
    for _ in range(attempts):
        state = dev.agent().advance(force=True)
        if state.last_error and state.phase == "selected":
            errors.append(state.last_error)
        if state.phase in ("staged", "rebooting"):
            return errors
    raise AssertionError(f"download did not converge: {errors}")


@pytest.mark.parametrize("fault", [
    Fault("throttle", PART, rate=400_000),
    Fault("stall", PART, after_bytes=300_000, seconds=4),
    Fault("reset", PART, after_bytes=300_000),
    Fault("truncate", PART, after_bytes=300_000),
], ids=lambda f: f.kind)
def test_download_completes_through_fault_without_refetching_finished_files(served, fault: Fault) -> None:
    site, dev, _server, proxy = served
    proxy.add(fault)
    errors = _drive_download(dev)
    proxy.settle()
    assert [d.fault for d in proxy.faults_hit()] == [fault.kind]
    assert proxy.completed_twice() == []
    paths = [d.path for d in proxy.log]
    # The static delta from the running commit was used (not the from-scratch one).
    assert any(re.search(r"/repo/deltas/[^/]+/[^/]+-[^/]+/superblock$", p) for p in paths), paths
    if fault.kind in ("reset", "truncate", "stall"):
        assert errors, "the interrupted transfer should have been reported and retried"
    assert dev.state()["target"]["checksum"] == site.commits["2"]


def test_unchanged_catalog_costs_one_small_conditional_request(served) -> None:
    _site, dev, _server, proxy = served
    agent = dev.agent()
    agent.check(agent.store.load(), select_target=False)
    before = len(proxy.log)
    agent.check(agent.store.load(), select_target=False)
    again = proxy.log[before:]
    assert [(d.path, d.status) for d in again] == [("/catalog.json", 304)]


def test_server_gone_keeps_the_device_running_and_says_why(served) -> None:
    _site, dev, server, _proxy = served
    server.stop()
    state = dev.agent().advance(force=True)
    assert state.phase == "idle"
    assert "unreachable" in state.last_error or "HTTP" in state.last_error
    assert state.retry_after
    assert [d.version for d in dev.deployments()] == ["1"]
