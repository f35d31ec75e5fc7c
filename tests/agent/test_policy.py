"""Windows, backoff and rollout buckets: pure functions with time and randomness injected."""

from __future__ import annotations

import random
from datetime import datetime, timezone

from updater import rollout, schedule
from updater.config import Window

SAT_SUN_2330 = (Window((5, 6), 23 * 60 + 30, 60),)


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_window_crosses_midnight_and_the_week_boundary() -> None:
    utc = timezone.utc
    assert schedule.in_window(SAT_SUN_2330, _at(2026, 11, 28, 23, 45), utc)        # Saturday 23:45
    assert schedule.in_window(SAT_SUN_2330, _at(2026, 11, 29, 0, 15), utc)         # Sunday 00:15 (Sat's)
    assert schedule.in_window(SAT_SUN_2330, _at(2026, 11, 30, 0, 29), utc)         # Monday 00:29 (Sun's)
    assert not schedule.in_window(SAT_SUN_2330, _at(2026, 11, 30, 0, 30), utc)
    assert not schedule.in_window(SAT_SUN_2330, _at(2026, 11, 27, 23, 45), utc)    # Friday


def test_next_opening_is_the_next_window_start() -> None:
    opening = schedule.next_opening(SAT_SUN_2330, _at(2026, 11, 30, 12, 0), timezone.utc)
    assert opening == _at(2026, 12, 5, 23, 30)


def test_windows_in_a_named_time_zone() -> None:
    tz = schedule.zone("America/Panama")  # UTC-5 all year
    assert schedule.in_window(SAT_SUN_2330, _at(2026, 11, 29, 4, 45), tz)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [schedule.backoff_delay(n, 60, 3600, rng) for n in range(1, 10)]
    assert 30 <= delays[0] <= 60
    assert 240 <= delays[3] <= 480
    assert all(d <= 3600 for d in delays) and delays[-1] >= 1800


def test_bucket_is_stable_keyed_and_not_the_raw_id() -> None:
    mid = "0123456789abcdef0123456789abcdef"
    assert rollout.bucket(mid) == rollout.bucket(mid)
    assert rollout.node_id(mid) != mid and len(rollout.node_id(mid)) == 32
    assert rollout.bucket(mid) != rollout.bucket("f" * 32)


def test_buckets_spread_evenly_over_a_fleet() -> None:
    rng = random.Random(7)
    buckets = [rollout.bucket(f"{rng.getrandbits(128):032x}") for _ in range(2000)]
    share = sum(b < 0.25 for b in buckets) / len(buckets)
    assert 0.2 < share < 0.3


def test_wariness_orders_the_same_device_earlier_or_later() -> None:
    mid = "00ff" * 8
    eager, plain, wary = (rollout.position(mid, w) for w in (0.0, 0.5, 1.0))
    assert eager == 0.0 and wary == 1.0 and 0 < plain < 1
    assert rollout.position(mid, 0.25) < plain < rollout.position(mid, 0.75)
