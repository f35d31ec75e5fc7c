"""Time zone and NTP servers: ``/etc/localtime`` and chrony's ``server`` lines.

``/etc/localtime`` is a relative symlink into ``/usr/share/zoneinfo`` (what ``timedatectl`` writes);
the NTP servers replace chrony's ``server``/``pool``/``peer`` lines in ``/etc/chrony.conf`` (osbuild's
``org.osbuild.chrony`` stage does the same edit).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from builder.stages import StageError

_ZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")


@dataclass(frozen=True)
class TimezoneOptions:
    """``[customizations.timezone]``."""

    timezone: str | None = None
    ntpservers: tuple[str, ...] = ()


def _set_zone(root: Path, zone: str) -> None:
    if not _ZONE.match(zone):
        raise StageError(f'customizations.timezone.timezone: "{zone}" is not a time zone name such as "Europe/Berlin"')
    known = [root / "usr/share/zoneinfo" / zone, Path("/usr/share/zoneinfo") / zone]
    if zone != "UTC" and not any(p.is_file() for p in known):
        raise StageError(f'customizations.timezone.timezone: unknown time zone "{zone}"')
    link = root / "etc/localtime"
    if link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(f"../usr/share/zoneinfo/{zone}", link)


def _set_ntp(root: Path, servers: tuple[str, ...]) -> None:
    conf = root / "etc/chrony.conf"
    kept = []
    if conf.exists():
        kept = [line for line in conf.read_text().splitlines() if not re.match(r"^\s*(server|pool|peer)\s", line)]
    if conf.is_symlink():
        conf.unlink()
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text("".join(f"server {s} iburst\n" for s in servers) + "".join(line + "\n" for line in kept))
    os.chmod(conf, 0o644)


def apply(root: Path, options: TimezoneOptions) -> None:
    """Set the zone and the NTP servers that are given."""
    if options.timezone:
        _set_zone(root, options.timezone)
    if options.ntpservers:
        _set_ntp(root, options.ntpservers)
