"""Downloads through a misbehaving network: throttled, stalled, reset and truncated responses.

The agent talks to a real static server through :mod:`tests.faultproxy`; the proxy's log proves that
the download finished, used the static delta from the running commit, and that no file was delivered
in full twice.
"""

from __future__ import annotations

import base64
import json
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
    assert _drive_download(dev) == [], "a broken transfer is resumed within the download step"
    proxy.settle()
    assert [d.fault for d in proxy.faults_hit()] == [fault.kind]
    assert proxy.completed_twice() == []
    paths = [d.path for d in proxy.log]
    # The static delta from the running commit was used (not the from-scratch one).
    assert any(re.search(r"/repo/deltas/[^/]+/[^/]+-[^/]+/superblock$", p) for p in paths), paths
    if fault.kind in ("reset", "truncate", "stall"):
        # Picked up where it broke off: a Range request for the rest of the part, not the part again.
        resumed = [d for d in proxy.log if re.search(PART, d.path) and d.range]
        assert resumed and all(d.status == 206 for d in resumed), proxy.log
        # A TCP reset can drop what sat unread in the socket buffers: that much is fetched again.
        assert proxy.bytes_delivered("/repo/") <= _delta_size(site) + 256 * 1024
    assert dev.state()["target"]["checksum"] == site.commits["2"]


def _delta_size(site: ReleaseSite) -> int:
    catalog = json.loads((site.release_dir / "catalog.json").read_text())
    release = next(r for ch in catalog["channels"].values() for r in ch["releases"] if r["version"] == "2")
    return sum(d["size"] for d in release["deltas"] if d["from"] == site.commits["1"])


def test_slow_link_that_cuts_connections_moves_the_delta_about_once(served) -> None:
    """The VM tier's bad link, in small: everything throttled, the delta part cut twice part way.

    Each cut transfer is resumed with a Range request (never started over), no object is fetched
    loose next to the delta (ostreedev/ostree#2680), and one download step gets through all of it.
    """
    site, dev, _server, proxy = served
    delta = _delta_size(site)
    proxy.add(Fault("reset", PART, times=2, after_bytes=delta // 3))
    proxy.add(Fault("throttle", times=-1, rate=1_000_000))
    assert _drive_download(dev, attempts=2) == []
    proxy.settle()
    assert [d.fault for d in proxy.faults_hit() if d.fault == "reset"] == ["reset", "reset"]
    part = [d for d in proxy.log if re.search(PART, d.path)]
    assert [d.status for d in part] == [200, 206, 206] and all(d.range for d in part[1:]), part
    assert not [d.path for d in proxy.log if "/objects/" in d.path]
    moved = proxy.bytes_delivered("/repo/")
    assert delta <= moved <= delta + 2 * 256 * 1024, (moved, delta)  # at most what socket buffers lost per cut
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


def test_quick_poll_is_one_304_and_steps_aside_when_anything_could_change(served) -> None:
    import random
    from datetime import datetime, timedelta, timezone

    from updater import config
    from updater.quickcheck import quick_poll
    from updater.state import StateStore
    from updater.transport import HttpClient

    site, dev, _server, proxy = served
    agent = dev.agent()
    state = agent.advance()                       # full check: 2 is offered, the update starts
    assert state.phase != "idle"
    cfg = config.load([dev.config_path])
    store = StateStore(dev.state_dir)
    client = HttpClient(timeout=5)
    assert quick_poll(cfg, store, client, random.Random()) is False   # not idle: a full step is needed

    # An up-to-date device: the full check records that nothing can change until the catalog expires.
    dev.boot_until_settled()
    assert dev.agent().advance(force=True).last_result["result"] == "success"
    state = dev.agent().advance(force=True)
    assert state.phase == "idle" and state.stable_until
    before = len(proxy.log)
    assert quick_poll(cfg, store, client, random.Random()) is True
    assert [(d.path, d.status) for d in proxy.log[before:]] == [("/catalog.json", 304)]
    site.publish("3", rollout_hours=10)
    assert quick_poll(cfg, store, client, random.Random()) is False    # catalog changed: 200
    # A pending phased rollout bounds how long the answer is stable.
    state = dev.agent().advance(force=True)
    assert state.phase == "idle" and "not yet rolled out" in state.last_check_result
    stable = datetime.strptime(state.stable_until, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert stable < datetime.now(timezone.utc) + timedelta(hours=10, minutes=1)
    assert quick_poll(cfg, store, client, random.Random()) is True
    assert quick_poll(cfg, store, client, random.Random(), now=stable + timedelta(seconds=1)) is False
