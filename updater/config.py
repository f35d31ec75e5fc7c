"""Agent configuration: TOML drop-ins merged in order, every key typed, checked and documented.

Drop-ins are read from ``/usr/lib/fieldshift/agent.d/*.toml`` then ``/etc/fieldshift/agent.d/*.toml``,
each directory in file-name order; later files win key by key, and the array tables
``reboot_window`` / ``download_window`` accumulate, the way zincati merges its
``config.d`` fragments (coreos/zincati ``docs/usage/configuration.md``). ``docs/agent.md`` lists every
key; :data:`KEYS` is the single definition of names, types and defaults.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from greenboot.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on the device's Python 3.9
    import tomli as tomllib

DROPIN_DIRS = (Path("/usr/lib/fieldshift/agent.d"), Path("/etc/fieldshift/agent.d"))
STRATEGIES = ("immediate", "window", "manual", "fleet_lock")
BACKENDS = ("auto", "ostree", "rpm-ostree")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_GROUP_RE = re.compile(r"^[a-zA-Z0-9.-]+$")
_TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class ConfigError(UserError):
    """A configuration file or key is invalid."""


@dataclass(frozen=True)
class Window:
    """A weekly recurring window: ``days`` (0=Monday), start minute of the day, length in minutes."""

    days: tuple[int, ...]
    start_minute: int
    length_minutes: int


@dataclass(frozen=True)
class Paths:
    """Every filesystem location the agent touches; tests point them all into a temp dir."""

    sysroot: Path = Path("/")
    state_dir: Path = Path("/var/lib/fieldshift/agent")
    grubenv: Path | None = None        # None: greenboot's choice (boot/grub2/grubenv, else boot/grub/grubenv)
    greenboot_root: Path = Path("/")
    kernel_cmdline: Path = Path("/proc/cmdline")
    booted_root: Path = Path("/")
    machine_id: Path = Path("/etc/machine-id")
    journal_socket: Path = Path("/run/systemd/journal/socket")
    prometheus_textfile: Path | None = None
    microshift_marker: Path = Path("/usr/bin/microshift")
    boot_id: Path = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class AgentConfig:
    """The merged, validated configuration; defaults are the documented ones."""

    channel: str = "stable"
    release_urls: tuple[str, ...] = ()
    source_dir: Path | None = None
    trusted_keys: tuple[Path, ...] = ()
    poll_interval_seconds: int = 3600
    poll_jitter_seconds: int = 300
    backoff_initial_seconds: int = 60
    backoff_max_seconds: int = 6 * 3600
    http_timeout_seconds: int = 30
    step_timeout_seconds: int = 6 * 3600
    rollout_wariness: float = 0.5
    os_name: str = ""
    backend: str = "auto"
    remote_name: str = "fieldshift"
    pull_retries: int = 5
    low_speed_limit_bytes: int = 1024
    low_speed_time_seconds: int = 30
    download_windows: tuple[Window, ...] = ()
    data_paths: tuple[Path, ...] | None = None
    min_free_bytes: int = 64 * 1024 * 1024
    boot_attempts: int = 0
    reboot_strategy: str = "immediate"
    reboot_windows: tuple[Window, ...] = ()
    time_zone: str = "UTC"
    reboot_command: tuple[str, ...] = ("systemctl", "reboot")
    fleet_lock_url: str = ""
    fleet_lock_group: str = "default"
    node_id: str = ""
    report_url: str = ""
    paths: Paths = field(default_factory=Paths)
    sources: tuple[Path, ...] = ()


# ---- key checkers: each takes (value, where) and returns the typed value or raises ConfigError ----


def _bad(where: str, what: str) -> ConfigError:
    return ConfigError(f"{where}: {what}")


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(where, f"expected a string, got {type(value).__name__}")
    return value


def _choice(options: Sequence[str]) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        text = _str(value, where)
        if text not in options:
            raise _bad(where, f"must be one of {', '.join(options)}, got {text!r}")
        return text

    return check


def _int(low: int, high: int | None = None) -> Callable[[Any, str], int]:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, f"expected an integer, got {type(value).__name__}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise _bad(where, f"must be {bound}, got {value}")
        return value

    return check


def _float01(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(where, f"expected a number between 0 and 1, got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise _bad(where, f"must be between 0 and 1, got {value}")
    return float(value)


def _url(value: Any, where: str) -> str:
    text = _str(value, where)
    if text and not re.match(r"^https?://[^\s/]+", text):
        raise _bad(where, f"expected an http:// or https:// URL, got {text!r}")
    return text


def _urls(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise _bad(where, "expected a URL or a list of URLs")
    return tuple(_url(v, f"{where}[{i}]") for i, v in enumerate(value))


def _strlist(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _bad(where, "expected a non-empty list of strings")
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(value))


def _group(value: Any, where: str) -> str:
    text = _str(value, where)
    if not _GROUP_RE.match(text):
        raise _bad(where, f"must match ^[a-zA-Z0-9.-]+$, got {text!r}")
    return text


def _time_zone(value: Any, where: str) -> str:
    text = _str(value, where)
    if text in ("UTC", "localtime"):
        return text
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(text)
    except Exception as err:  # noqa: BLE001 - any failure means the name is unusable
        raise _bad(where, f"unknown time zone {text!r} (use UTC, localtime or an IANA name)") from err
    return text


def _path(value: Any, where: str) -> str:
    text = _str(value, where)
    if not text:
        raise _bad(where, "expected a non-empty path")
    return text


def _paths(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _bad(where, "expected a list of paths")
    return tuple(_path(v, f"{where}[{i}]") for i, v in enumerate(value))


def _windows(value: Any, where: str) -> tuple[Window, ...]:
    if not isinstance(value, list):
        raise _bad(where, "expected an array of tables ([[...]])")
    out = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise _bad(here, "expected a table with days, start_time, length_minutes")
        unknown = set(item) - {"days", "start_time", "length_minutes"}
        if unknown:
            raise _bad(f"{here}.{sorted(unknown)[0]}", "unknown key (expected days, start_time, length_minutes)")
        for key in ("days", "start_time", "length_minutes"):
            if key not in item:
                raise _bad(f"{here}.{key}", "missing")
        days = []
        for j, day in enumerate(_strlist(item["days"], f"{here}.days")):
            short = day.strip().lower()[:3]
            if short not in DAYS or day.lower() not in (short, _full_day(short)):
                raise _bad(f"{here}.days[{j}]", f"unknown weekday {day!r} (use Mon..Sun or Monday..Sunday)")
            days.append(DAYS.index(short))
        match = _TIME_RE.match(_str(item["start_time"], f"{here}.start_time"))
        if not match:
            raise _bad(f"{here}.start_time", f"expected hh:mm, got {item['start_time']!r}")
        length = _int(1, 7 * 24 * 60)(item["length_minutes"], f"{here}.length_minutes")
        out.append(Window(tuple(sorted(set(days))), int(match.group(1)) * 60 + int(match.group(2)), length))
    return tuple(out)


def _full_day(short: str) -> str:
    return {"mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday",
            "sat": "saturday", "sun": "sunday"}[short]


@dataclass(frozen=True)
class Key:
    """One documented configuration key: its checker and a one-line description (shown in docs)."""

    check: Callable[[Any, str], Any]
    doc: str


KEYS: Mapping[str, Key] = {
    "channel": Key(_str, "update channel the device follows"),
    "release_url": Key(_urls, "base URL(s) of published release directories, tried in order"),
    "source_dir": Key(_path, "a local release directory used instead of (or before) release_url"),
    "trusted_keys": Key(_paths, "catalog public keys (PEM); a catalog must be signed by one of them"),
    "poll_interval_seconds": Key(_int(10), "seconds between two catalog checks"),
    "poll_jitter_seconds": Key(_int(0), "random extra delay (0..N s) added to each poll"),
    "backoff_initial_seconds": Key(_int(1), "first retry delay after a failed check or download"),
    "backoff_max_seconds": Key(_int(1), "cap of the exponential retry delay"),
    "http_timeout_seconds": Key(_int(1), "connect/read timeout of catalog requests"),
    "step_timeout_seconds": Key(_int(1), "the service stops a step (check, pull, stage) running longer; retried"),
    "rollout_wariness": Key(_float01, "0 = take phased releases first, 1 = last (zincati's rollout_wariness)"),
    "os_name": Key(_str, "ostree stateroot (os name); empty = the booted one"),
    "backend": Key(_choice(BACKENDS), "staging backend: auto, ostree or rpm-ostree"),
    "remote_name": Key(_group, "name of the ostree remote the agent manages"),
    "pull_retries": Key(_int(0, 100), "network retries ostree does inside one pull"),
    "low_speed_limit_bytes": Key(_int(0), "abort a transfer slower than this many bytes/s ..."),
    "low_speed_time_seconds": Key(_int(0), "... for this many seconds (then retry)"),
    "download_window": Key(_windows, "[[download_window]] days/start_time/length_minutes; none = any time"),
    "data_paths": Key(_paths, "paths snapshotted before staging (default /var/lib/microshift if installed)"),
    "min_free_bytes": Key(_int(0), "free space to keep on the snapshot filesystem beyond the snapshot"),
    "boot_attempts": Key(_int(0, 99), "boot counter armed at staging; 0 = greenboot's max_boot_attempts"),
    "reboot_strategy": Key(_choice(STRATEGIES), "immediate, window, manual or fleet_lock"),
    "reboot_window": Key(_windows, "[[reboot_window]] days/start_time/length_minutes (strategy window)"),
    "time_zone": Key(_time_zone, "time zone of the windows: UTC (default), localtime or an IANA name"),
    "reboot_command": Key(_strlist, "argv run to reboot (default systemctl reboot)"),
    "fleet_lock_url": Key(_url, "FleetLock base URL (strategy fleet_lock)"),
    "fleet_lock_group": Key(_group, "FleetLock reboot group"),
    "node_id": Key(_str, "FleetLock client id; empty = app-specific hash of machine-id"),
    "report_url": Key(_url, "URL receiving JSON events by POST (queued on disk while offline)"),
    "paths.sysroot": Key(_path, "the ostree sysroot (/ on a device)"),
    "paths.state_dir": Key(_path, "agent state, catalog cache, snapshots, event queue"),
    "paths.grubenv": Key(_path, "grub environment block holding boot_counter / boot_success"),
    "paths.greenboot_root": Key(_path, "root under which greenboot's config and reports live"),
    "paths.kernel_cmdline": Key(_path, "kernel command line naming the booted deployment (ostree=)"),
    "paths.booted_root": Key(_path, "the running system's / (matched by device and inode to a deployment)"),
    "paths.machine_id": Key(_path, "machine-id file (hashed, never sent)"),
    "paths.journal_socket": Key(_path, "journald native socket; stderr when absent"),
    "paths.prometheus_textfile": Key(_path, "node_exporter textfile written after each step"),
    "paths.microshift_marker": Key(_path, "file whose presence means MicroShift is installed"),
    "paths.boot_id": Key(_path, "this boot's id (the booted deployment is resolved once per boot)"),
}

_TABLES = ("paths",)
_ACCUMULATE = ("reboot_window", "download_window")


def _suggest(name: str, known: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_table(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Check one config table (a drop-in, or the blueprint's ``[fieldshift.agent]``).

    ``where`` prefixes key paths in errors, e.g. ``fieldshift.agent`` gives
    ``fieldshift.agent.reboot_strategy: must be one of ...``. Returns the typed values by dotted key.
    """
    out: dict[str, Any] = {}
    for name, value in table.items():
        here = f"{where}.{name}" if where else name
        if name in _TABLES:
            if not isinstance(value, dict):
                raise _bad(here, "expected a table")
            for sub, subvalue in value.items():
                dotted = f"{name}.{sub}"
                if dotted not in KEYS:
                    known = [k.split(".", 1)[1] for k in KEYS if k.startswith(name + ".")]
                    raise _bad(f"{here}.{sub}", "unknown key" + _suggest(sub, known))
                out[dotted] = KEYS[dotted].check(subvalue, f"{here}.{sub}")
            continue
        if name not in KEYS or "." in name:
            raise _bad(here, "unknown key" + _suggest(name, [k for k in KEYS if "." not in k] + list(_TABLES)))
        out[name] = KEYS[name].check(value, here)
    if "rollout_wariness" in out and out["rollout_wariness"] is None:  # pragma: no cover - defensive
        del out["rollout_wariness"]
    return out


def dropin_files(dirs: Sequence[Path] = DROPIN_DIRS) -> list[Path]:
    """The drop-in files in merge order: each directory in turn, files sorted by name."""
    files: list[Path] = []
    for d in dirs:
        if d.is_dir():
            files.extend(sorted(p for p in d.iterdir() if p.suffix == ".toml" and p.is_file()))
    return files


def _resolve(base: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else (base / path)


def load(files: Sequence[Path] | None = None) -> AgentConfig:
    """Read and merge ``files`` (default: the drop-in directories) into an :class:`AgentConfig`.

    Relative paths in a file are resolved against that file's directory. An unreadable file, a TOML
    syntax error or an invalid key raises :class:`ConfigError` naming the file and the key.
    """
    chosen = list(files) if files is not None else dropin_files()
    merged: dict[str, Any] = {}
    for path in chosen:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"{path}: cannot read ({err.strerror})") from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML ({err})") from err
        values = validate_table(raw, "")
        base = Path(path).resolve().parent
        for key, value in values.items():
            where = f"{path}: {key}"
            if key in ("trusted_keys", "data_paths"):
                value = tuple(_resolve(base, v) for v in value)
            elif key == "source_dir" or key.startswith("paths."):
                value = _resolve(base, value)
            if key in _ACCUMULATE:
                merged[key] = merged.get(key, ()) + value
            else:
                merged[key] = value
            merged.setdefault("_where", {})[key] = where
    return _build(merged, tuple(Path(p) for p in chosen))


def _build(values: dict[str, Any], sources: tuple[Path, ...]) -> AgentConfig:
    where = values.pop("_where", {})
    path_values = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("paths.")}
    kwargs: dict[str, Any] = {}
    rename = {"release_url": "release_urls", "reboot_window": "reboot_windows", "download_window": "download_windows"}
    for key, value in values.items():
        if key.startswith("paths."):
            continue
        kwargs[rename.get(key, key)] = value
    if "reboot_command" in kwargs:
        kwargs["reboot_command"] = tuple(kwargs["reboot_command"])
    cfg = AgentConfig(paths=Paths(**path_values), sources=sources, **kwargs)
    if cfg.reboot_strategy == "window" and not cfg.reboot_windows:
        raise ConfigError(f"{where.get('reboot_strategy', 'reboot_strategy')}: strategy 'window' needs at least one "
                          "[[reboot_window]] table")
    if cfg.reboot_strategy == "fleet_lock" and not cfg.fleet_lock_url:
        raise ConfigError(f"{where.get('reboot_strategy', 'reboot_strategy')}: strategy 'fleet_lock' needs "
                          "fleet_lock_url")
    if cfg.backoff_initial_seconds > cfg.backoff_max_seconds:
        raise ConfigError(f"{where.get('backoff_initial_seconds', 'backoff_initial_seconds')}: must not exceed "
                          "backoff_max_seconds")
    return cfg
