"""The service's cheap routine poll: one conditional GET, no fork, no signature check, when nothing can change.

A routine poll normally runs the full check in a forked step (catalog fetch, signature verification,
choice). When the device is idle, the catalog server answers ``304 Not Modified`` to the cached ETag
and the last full check recorded that its answer cannot change before ``stable_until`` (catalog expiry,
or the moment a phased rollout reaches this device), re-verifying the same bytes would only repeat the
same answer. Then the poll just records its time. Anything else (a changed catalog, an error, a
non-idle phase, the first poll of the process) falls back to the full step.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from updater.config import AgentConfig
from updater.reports import state_metrics, write_textfile
from updater.schedule import poll_delay
from updater.state import IDLE, StateStore
from updater.transport import HttpClient, HttpError

_FMT = "%Y-%m-%dT%H:%M:%SZ"


def _parse(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _FMT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def quick_poll(cfg: AgentConfig, store: StateStore, client: HttpClient, rng: random.Random,
               now: datetime | None = None) -> bool:
    """Handle a due routine poll without a full step; True when done, False when a full step is needed."""
    now = now or datetime.now(timezone.utc)
    state = store.load()
    if state.phase != IDLE or not (state.etag or state.last_modified) or cfg.source_dir is not None:
        return False
    stable = _parse(state.stable_until)
    if stable is None or now >= stable:
        return False
    try:
        base = (Path(cfg.paths.state_dir) / "catalog" / "source").read_text(encoding="utf-8").strip()
    except OSError:
        return False
    if base not in cfg.release_urls:
        return False
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    try:
        resp = client.get(base.rstrip("/") + "/catalog.json", headers=headers, limit=4096)
    except HttpError:
        return False
    if resp.status != 304:
        return False
    delay = poll_delay(cfg.poll_interval_seconds, cfg.poll_jitter_seconds, rng)
    state = store.save(state.update(last_check=now.strftime(_FMT), last_error="", failures=0,
                                    retry_after=(now + timedelta(seconds=delay)).strftime(_FMT)))
    try:
        write_textfile(cfg.paths.prometheus_textfile, state_metrics(state))
    except OSError:
        pass
    return True
