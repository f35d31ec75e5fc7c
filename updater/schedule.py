"""When to act: weekly windows (reboot and download), jittered polling and exponential backoff.

Windows follow zincati's periodic strategy (coreos/zincati ``docs/usage/updates-strategy.md``):
each window has weekdays, an ``hh:mm`` start and a length in minutes, may cross day and week
boundaries, and is read in one configured time zone (UTC by default). Time is always passed in, so
tests inject it.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Sequence

from updater.config import Window

WEEK_MINUTES = 7 * 24 * 60


def zone(name: str) -> tzinfo:
    """The tzinfo for a configured ``time_zone`` (``UTC``, ``localtime`` or an IANA name)."""
    if name == "UTC":
        return timezone.utc
    if name == "localtime":
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else timezone.utc
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


def _week_minute(moment: datetime) -> int:
    return moment.weekday() * 24 * 60 + moment.hour * 60 + moment.minute


def in_window(windows: Sequence[Window], now: datetime, tz: tzinfo) -> bool:
    """True when ``now`` lies inside any of ``windows`` (an empty list means "always")."""
    if not windows:
        return True
    local = now.astimezone(tz)
    minute = _week_minute(local)
    for w in windows:
        for day in w.days:
            start = day * 24 * 60 + w.start_minute
            if (minute - start) % WEEK_MINUTES < w.length_minutes:
                return True
    return False


def next_opening(windows: Sequence[Window], now: datetime, tz: tzinfo) -> datetime | None:
    """The earliest moment at or after ``now`` that lies in a window (``now`` itself if inside)."""
    if not windows or in_window(windows, now, tz):
        return now
    local = now.astimezone(tz)
    minute = _week_minute(local)
    best: int | None = None
    for w in windows:
        for day in w.days:
            wait = (day * 24 * 60 + w.start_minute - minute) % WEEK_MINUTES
            best = wait if best is None else min(best, wait)
    if best is None:
        return None
    base = local.replace(second=0, microsecond=0)
    return (base + timedelta(minutes=best)).astimezone(now.tzinfo or timezone.utc)


def poll_delay(interval: int, jitter: int, rng: random.Random) -> float:
    """Seconds until the next routine check: the interval plus a uniform random jitter."""
    return float(interval) + (rng.uniform(0, jitter) if jitter > 0 else 0.0)


def backoff_delay(failures: int, initial: int, cap: int, rng: random.Random) -> float:
    """Exponential backoff with "full jitter": uniform in [d/2, d] where d = min(cap, initial * 2**(n-1))."""
    if failures <= 0:
        return 0.0
    delay = min(float(cap), float(initial) * (2 ** min(failures - 1, 30)))
    return rng.uniform(delay / 2, delay)
