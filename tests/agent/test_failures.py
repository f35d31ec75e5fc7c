"""Bad days: disk full, corrupt object, refused catalog, wrong clock, offline report URL.

In every case the device keeps running its current deployment, ``status`` says why, and the agent
retries later.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.httpserve import StaticServer
from tests.sim.device import Device, ReleaseSite


def _versions(dev: Device) -> list[str]:
    return [d.version for d in dev.deployments()]


def test_disk_too_full_for_the_snapshot_refuses_with_the_needed_size(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    dev.data_dir.mkdir(parents=True, exist_ok=True)
    (dev.data_dir / "etcd.db").write_bytes(b"x" * 4096)
    dev.config.update(min_free_bytes=1 << 60)
    dev.write_config()
    site.publish("2")
    state = dev.agent().advance()
    assert state.phase == "downloaded"
    assert "not enough free space" in state.last_error and "need" in state.last_error
    assert state.retry_after
    assert _versions(dev) == ["1"]
    dev.config.update(min_free_bytes=0)
    dev.write_config()
    assert dev.agent().advance(force=True).phase == "rebooting"


def test_corrupt_object_on_the_server_is_refused_and_retried(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("1")
    site.publish("2")
    repo = site.release_dir / "repo"
    parts = sorted(p for p in (repo / "deltas").rglob("*") if p.is_file() and p.name.isdigit())
    parts += sorted((repo / "objects").rglob("*.filez"))
    assert parts
    originals = {p: p.read_bytes() for p in parts}
    for p in parts:
        data = bytearray(originals[p])
        data[len(data) // 2] ^= 0xFF
        p.write_bytes(bytes(data))
    with StaticServer(site.release_dir) as server:
        dev.config.update(release_url=[server.url], source_dir=None, pull_retries=0)
        dev.write_config()
        state = dev.agent().advance()
        assert state.phase == "selected" and state.last_error.startswith("download:")
        assert _versions(dev) == ["1"]
        for p, data in originals.items():
            p.write_bytes(data)
        assert dev.agent().advance(force=True).phase == "rebooting"


def test_tampered_catalog_over_http_is_refused_and_nothing_changes(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("2")
    catalog = site.release_dir / "catalog.json"
    catalog.write_bytes(catalog.read_bytes().replace(b'"withdrawn": false', b'"withdrawn": true ', 1))
    with StaticServer(site.release_dir) as server:
        dev.config.update(release_url=[server.url], source_dir=None)
        dev.write_config()
        state = dev.agent().advance()
    assert state.phase == "idle" and state.target is None
    assert "signature" in state.last_error
    assert _versions(dev) == ["1"]


def test_clock_far_ahead_makes_the_catalog_look_expired_and_the_device_waits(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    site.publish("2")
    future = datetime.now(timezone.utc) + timedelta(days=400)
    state = dev.agent(now=lambda: future).advance()
    assert state.phase == "idle" and "expired" in state.last_error
    out = dev.cli("status", "--json")
    assert "expired" in json.loads(out.stdout)["last_error"]
    assert _versions(dev) == ["1"]
    assert dev.agent().advance(force=True).phase == "rebooting"   # clock fixed: it proceeds


class _Collector(BaseHTTPRequestHandler):
    events: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).events.append(json.loads(body))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_report_events_are_queued_while_offline_and_delivered_in_order(
        site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    url = f"http://127.0.0.1:{server.server_address[1]}/events"
    server.server_close()  # nobody listens yet: the device is "offline" for reports
    dev.config.update(report_url=url)
    dev.write_config()
    site.publish("2")
    dev.agent().advance()
    queued = sorted((dev.state_dir / "events").glob("*.json"))
    assert [json.loads(p.read_text())["event"] for p in queued][:2] == ["update_found", "download_done"]
    _Collector.events = []
    server = ThreadingHTTPServer(("127.0.0.1", int(url.split(":")[2].split("/")[0])), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dev.boot_until_settled()
        dev.agent().advance(force=True)     # confirms the update
        dev.agent().advance(force=True)     # the next pass delivers the queue
    finally:
        server.shutdown()
        server.server_close()
    names = [e["event"] for e in _Collector.events]
    assert names[:2] == ["update_found", "download_done"]
    assert "update_succeeded" in names
    assert all(e["node"] and e["node"] != Path(dev.root / "etc/machine-id").read_text().strip()
               for e in _Collector.events)
    assert not list((dev.state_dir / "events").glob("*.json"))


def test_download_waits_for_its_window(site_and_device: tuple[ReleaseSite, Device]) -> None:
    site, dev = site_and_device
    dev.config.update(download_window=[{"days": ["Sun"], "start_time": "02:00", "length_minutes": 120}])
    dev.write_config()
    site.publish("2")
    monday = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    sunday = datetime(2026, 12, 6, 2, 30, tzinfo=timezone.utc)
    state = dev.agent(now=lambda: monday).advance()
    assert state.phase == "selected"
    assert state.progress["waiting_for_window"] == "2026-12-06T02:00:00Z"
    assert dev.agent(now=lambda: sunday).advance().phase == "rebooting"
