"""Choose the release to move to: the channel's newest offered release, barriers first,
never a release withdrawn by the publisher or denylisted on this device after a failed boot.

Builds on the catalog's own model (:mod:`updater.catalog`); the device-side inputs are the running
version, the denylist, and the device's rollout position (:mod:`updater.rollout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Collection

from updater.catalog import Catalog, Release, is_newer


@dataclass(frozen=True)
class Choice:
    """The outcome: a release to apply, or none with the reason why (shown in status).

    ``next_change`` is the earliest time at which the same catalog could give another answer (a
    phased rollout reaching this device); None when only a new catalog can change it.
    """

    release: Release | None
    reason: str
    next_change: datetime | None = None


def _admitted_at(release: Release, position: float) -> datetime | None:
    """When a phased rollout reaches a device at ``position`` (None: not phased)."""
    if release.rollout is None:
        return None
    return release.rollout.start + timedelta(hours=release.rollout.hours * position)


def choose(catalog: Catalog, channel_name: str, current_version: str | None, *, now: datetime,
           position: float, denylist: Collection[str] = ()) -> Choice:
    """Pick the target release for a device at rollout ``position`` (0 eager .. 1 wary)."""
    channel = catalog.channel(channel_name)
    newer = [r for r in channel.releases if current_version is None or is_newer(r.version, current_version)]
    if not newer:
        return Choice(None, f"up to date ({current_version or 'unknown version'} is the newest of {channel_name!r})")
    for release in newer:
        if release.barrier and not release.withdrawn:
            if release.commit in denylist:
                return Choice(None, f"barrier release {release.version} failed on this device earlier; "
                                    "not passing it again")
            if not release.offered(position, now):
                return Choice(None, f"barrier release {release.version} is not yet rolled out to this device",
                              _admitted_at(release, position))
            return Choice(release, f"barrier release {release.version} must be applied first")
    skipped = []
    pending: list[datetime] = []
    for release in reversed(newer):
        if release.withdrawn:
            skipped.append(f"{release.version} withdrawn")
        elif release.commit in denylist:
            skipped.append(f"{release.version} denylisted")
        elif not release.offered(position, now):
            skipped.append(f"{release.version} not yet rolled out here")
            when = _admitted_at(release, position)
            pending.append(when if when is not None else now)
        else:
            return Choice(release, f"newest release of {channel_name!r}")
    return Choice(None, "no release to apply (" + "; ".join(skipped) + ")", min(pending) if pending else None)
