"""Host identity settings: hostname, time zone (+ chrony NTP servers), locale and console keymap.

Files as systemd and chrony read them: ``/etc/hostname``, ``/etc/localtime`` (a relative symlink into
``/usr/share/zoneinfo``), ``/etc/chrony.conf`` ``server`` lines (osbuild's ``org.osbuild.chrony``),
``/etc/locale.conf`` ``LANG=`` and ``/etc/vconsole.conf`` ``KEYMAP=``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from builder.stages import StageError

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}"
                       r"[a-zA-Z0-9])?)*$")
_ZONE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")


@dataclass(frozen=True)
class SystemOptions:
    """Each ``None`` / empty value leaves the package default alone."""

    hostname: str | None = None
    timezone: str | None = None
    ntpservers: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    keyboard: str | None = None


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)


def _set_timezone(root: Path, zone: str) -> None:
    if not _ZONE.match(zone) or ".." in zone:
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
        kept = [line for line in conf.read_text().splitlines()
                if not re.match(r"^\s*(server|pool|peer)\s", line)]
    text = "".join(f"server {s} iburst\n" for s in servers) + "".join(line + "\n" for line in kept)
    _write(conf, text)


def apply(root: Path, options: SystemOptions) -> None:
    """Write the settings that are given."""
    if options.hostname is not None:
        if not _HOSTNAME.match(options.hostname):
            raise StageError(f'customizations.hostname: "{options.hostname}" is not a valid host name')
        _write(root / "etc/hostname", options.hostname + "\n")
    if options.timezone:
        _set_timezone(root, options.timezone)
    if options.ntpservers:
        _set_ntp(root, options.ntpservers)
    if options.languages:
        _write(root / "etc/locale.conf", f"LANG={options.languages[0]}\n")
    if options.keyboard:
        vconsole = root / "etc/vconsole.conf"
        lines = [x for x in (vconsole.read_text().splitlines() if vconsole.exists() else [])
                 if not x.startswith("KEYMAP=")]
        _write(vconsole, "".join(x + "\n" for x in lines) + f"KEYMAP={options.keyboard}\n")
