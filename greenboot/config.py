"""Read ``/etc/greenboot/greenboot.conf`` the way bash greenboot sources it, into a typed config.

greenboot ``source``s the file, so it holds bash assignments: ``KEY=value``, quoted values,
``export KEY=value``, trailing comments and arrays such as ``DISABLED_HEALTHCHECKS=( "a.sh" "b.sh" )``
(upstream ``etc/greenboot/greenboot.conf`` and ``usr/libexec/greenboot/greenboot``). We parse that
subset without running a shell; anything else (commands, ``$VAR`` expansion) is an error naming the
line. Every scalar assignment is also passed to check scripts as an environment variable, which is
how ``MICROSHIFT_WAIT_TIMEOUT_SEC`` reaches MicroShift's scripts.

Keys of our own start with ``FIELDSHIFT_`` (see ``docs/greenboot.md``). The blueprint table
``[fieldshift.greenboot]`` uses the lower-case names in :data:`KEYS` and is turned into this file by
:func:`render`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from greenboot.errors import UserError
from greenboot.layout import Layout

DEFAULT_SERVICE_PROBE = ("systemctl", "is-active", "microshift.service")
DEFAULT_KUBECONFIG = "/var/lib/microshift/resources/kubeadmin/kubeconfig"
# Grub scripts without ``decrement`` count down through a fixed ladder (greenboot/data/grub/);
# the blueprint rule for [fieldshift.greenboot] max_boot_attempts allows the same 1..100.
MAX_ATTEMPTS_LIMIT = 100


class ConfigError(UserError):
    """greenboot.conf or the [fieldshift.greenboot] table holds something we cannot use."""


@dataclass(frozen=True)
class Key:
    """One supported setting: its greenboot.conf name, blueprint name, kind and default."""

    conf: str
    table: str
    kind: str  # "int", "bool", "str", "list"
    default: Any
    low: Optional[int] = None
    high: Optional[int] = None


KEYS: Tuple[Key, ...] = (
    # greenboot's own keys
    Key("GREENBOOT_MAX_BOOT_ATTEMPTS", "max_boot_attempts", "int", 3, 1, MAX_ATTEMPTS_LIMIT),
    Key("DISABLED_HEALTHCHECKS", "disabled_healthchecks", "list", ()),
    Key("GREENBOOT_WATCHDOG_CHECK_ENABLED", "watchdog_check_enabled", "bool", False),
    Key("GREENBOOT_WATCHDOG_GRACE_PERIOD", "watchdog_grace_period", "int", 24, 0, None),
    Key("GREENBOOT_MONITOR_SERVICES", "monitor_services", "str", ""),
    # MicroShift's key (packaging/greenboot/functions.sh: 60..9999 s, default 300)
    Key("MICROSHIFT_WAIT_TIMEOUT_SEC", "microshift_wait_timeout_sec", "int", 300, 60, 9999),
    # ours
    Key("FIELDSHIFT_SCRIPT_TIMEOUT_SEC", "script_timeout_sec", "int", 1800, 0, None),
    Key("FIELDSHIFT_RUN_TIMEOUT_SEC", "run_timeout_sec", "int", 3600, 0, None),
    Key("FIELDSHIFT_KEEP_GOING", "keep_going", "bool", False),
    Key("FIELDSHIFT_REPORTS_KEEP", "reports_keep", "int", 10, 1, 1000),
    Key("FIELDSHIFT_OUTPUT_LINES", "output_lines", "int", 20, 0, 1000),
    Key("FIELDSHIFT_GRUBENV", "grubenv", "str", ""),
    Key("FIELDSHIFT_MICROSHIFT_SERVICE_PROBE", "microshift_service_probe", "list", DEFAULT_SERVICE_PROBE),
    Key("FIELDSHIFT_MICROSHIFT_KUBECONFIG", "microshift_kubeconfig", "str", DEFAULT_KUBECONFIG),
    Key("FIELDSHIFT_MICROSHIFT_WORKLOADS", "microshift_workloads", "list", ()),
    Key("FIELDSHIFT_MICROSHIFT_STORAGE", "microshift_storage", "str", "auto"),
)
_BY_CONF = {k.conf: k for k in KEYS}
_BY_TABLE = {k.table: k for k in KEYS}


@dataclass(frozen=True)
class GreenbootConfig:
    """The effective settings; ``env`` holds every scalar assignment from the file, verbatim."""

    max_boot_attempts: int = 3
    disabled_healthchecks: Tuple[str, ...] = ()
    watchdog_check_enabled: bool = False
    watchdog_grace_period: int = 24
    monitor_services: str = ""
    microshift_wait_timeout_sec: int = 300
    script_timeout_sec: int = 1800
    run_timeout_sec: int = 3600
    keep_going: bool = False
    reports_keep: int = 10
    output_lines: int = 20
    grubenv: str = ""
    microshift_service_probe: Tuple[str, ...] = DEFAULT_SERVICE_PROBE
    microshift_kubeconfig: str = DEFAULT_KUBECONFIG
    microshift_workloads: Tuple[str, ...] = ()
    microshift_storage: str = "auto"
    env: Dict[str, str] = field(default_factory=dict, compare=False)
    source: Optional[Path] = None
    warnings: Tuple[str, ...] = ()


_ASSIGN = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)(\+?)=(.*)$", re.S)


def _words(text: str, where: str) -> list[str]:
    if any("$" in part for part in _raw_unquoted(text)):
        raise ConfigError(f"{where}: variable expansion ('$') is not supported in greenboot.conf")
    try:
        lexer = shlex.shlex(text, posix=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        return list(lexer)
    except ValueError as err:
        raise ConfigError(f"{where}: {err} (unbalanced quotes?)") from err


def _raw_unquoted(text: str) -> list[str]:
    """The parts of ``text`` outside single quotes (where bash would expand ``$``)."""
    parts = []
    inside = False
    current = ""
    for ch in text:
        if ch == "'" and not inside:
            parts.append(current)
            current = ""
            inside = True
        elif ch == "'" and inside:
            inside = False
        elif not inside:
            current += ch
    parts.append(current)
    return parts


def parse_assignments(text: str, where: str = "greenboot.conf") -> Dict[str, Union[str, Tuple[str, ...]]]:
    """Parse bash assignments into ``{name: str | tuple}``; later assignments win, ``+=`` appends arrays."""
    values: Dict[str, Union[str, Tuple[str, ...]]] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        m = _ASSIGN.match(line)
        if not m:
            raise ConfigError(f"{where}:{lineno}: only KEY=value assignments are supported, got {line[:40]!r}")
        name, append, rest = m.group(1), m.group(2), m.group(3)
        if rest.startswith("("):
            body = rest[1:]
            while ")" not in _strip_comment(body):
                if i >= len(lines):
                    raise ConfigError(f"{where}:{lineno}: array {name} is missing its closing ')'")
                body += "\n" + lines[i]
                i += 1
            inner, _, after = _strip_comment(body).rpartition(")")
            if after.strip():
                raise ConfigError(f"{where}:{lineno}: unexpected text after the array {name}: {after.strip()!r}")
            items = tuple(_words(inner, f"{where}:{lineno}"))
            old = values.get(name, ())
            values[name] = (tuple(old) if isinstance(old, tuple) else (old,)) + items if append else items
            continue
        words = _words(rest, f"{where}:{lineno}") if rest else []
        if rest[:1].isspace() or len(words) > 1:
            raise ConfigError(f"{where}:{lineno}: the value of {name} has unquoted spaces; quote it")
        value = words[0] if words else ""
        if append:
            old = values.get(name, "")
            values[name] = old + (value,) if isinstance(old, tuple) else old + value
        else:
            values[name] = value
    return values


def _strip_comment(text: str) -> str:
    """``text`` without a trailing ``# comment`` that sits outside quotes."""
    quote = ""
    for idx, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (idx == 0 or text[idx - 1].isspace()):
            # keep the rest of the line only if a newline follows (multi-line arrays)
            nl = text.find("\n", idx)
            return text[:idx] + ("" if nl < 0 else _strip_comment(text[nl:]))
    return text


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(key: Key, raw: Any, where: str) -> Any:
    if key.kind == "list":
        if isinstance(raw, str):
            try:
                return tuple(shlex.split(raw))
            except ValueError as err:
                raise ConfigError(f"{where}: {err}") from err
        if isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
            return tuple(raw)
        raise ConfigError(f"{where}: expected a list of strings")
    if isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}: expected a single value, not an array")
    if key.kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if key.kind == "int":
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected a whole number, got {raw!r}")
        try:
            number = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{where}: expected a whole number, got {raw!r}") from None
        if key.low is not None and number < key.low:
            raise ConfigError(f"{where}: {number} is below the minimum {key.low}")
        if key.high is not None and number > key.high:
            raise ConfigError(f"{where}: {number} is above the maximum {key.high}")
        return number
    if not isinstance(raw, (str, int)) or isinstance(raw, bool):
        raise ConfigError(f"{where}: expected a string, got {raw!r}")
    return str(raw)


def from_assignments(values: Mapping[str, Union[str, Tuple[str, ...]]], where: str) -> GreenbootConfig:
    """Build a config from parsed assignments; unknown names are kept only for the script environment."""
    kwargs: Dict[str, Any] = {}
    warnings = []
    for name, raw in values.items():
        key = _BY_CONF.get(name)
        if key is None:
            continue
        try:
            kwargs[key.table] = _convert(key, raw, f"{where}: {name}")
        except ConfigError as err:
            if name.startswith("FIELDSHIFT_"):
                raise
            # greenboot's and MicroShift's own keys: be as forgiving as their scripts are
            # (functions.sh clamps the wait to 60 s and falls back to defaults).
            fallback = key.default
            if key.kind == "int" and key.low is not None and str(raw).strip().lstrip("-").isdigit():
                fallback = min(max(int(str(raw)), key.low), key.high if key.high is not None else int(str(raw)))
            kwargs[key.table] = fallback
            warnings.append(f"{err.message}; using {fallback!r}")
    if kwargs.get("microshift_storage", "auto") not in ("auto", "true", "false"):
        raise ConfigError(f"{where}: FIELDSHIFT_MICROSHIFT_STORAGE must be auto, true or false")
    env = {k: v for k, v in values.items() if isinstance(v, str)}
    return GreenbootConfig(env=env, warnings=tuple(warnings), **kwargs)


def load(root: Union[Path, str] = "/") -> GreenbootConfig:
    """Read ``<root>/etc/greenboot/greenboot.conf``; defaults when it does not exist."""
    path = Layout.at(root).conf
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return GreenbootConfig()
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from err
    cfg = from_assignments(parse_assignments(text, str(path)), str(path))
    return _with_source(cfg, path)


def _with_source(cfg: GreenbootConfig, path: Path) -> GreenbootConfig:
    import dataclasses

    return dataclasses.replace(cfg, source=path)


def validate_table(table: Mapping[str, Any], where: str = "fieldshift.greenboot") -> GreenbootConfig:
    """Check a ``[fieldshift.greenboot]`` blueprint table; errors name the key, e.g. ``fieldshift.greenboot.x``."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table")
    kwargs: Dict[str, Any] = {}
    for name, raw in table.items():
        key = _BY_TABLE.get(name)
        if key is None:
            import difflib

            near = difflib.get_close_matches(name, list(_BY_TABLE), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{where}.{name} is not a known greenboot setting{hint}")
        kwargs[key.table] = _convert(key, raw, f"{where}.{name}")
    if kwargs.get("microshift_storage", "auto") not in ("auto", "true", "false"):
        raise ConfigError(f"{where}.microshift_storage must be auto, true or false")
    return GreenbootConfig(**kwargs)


def _quote(value: str) -> str:
    return shlex.quote(value) if value else '""'


def render(table: Mapping[str, Any], where: str = "fieldshift.greenboot") -> str:
    """greenboot.conf text for a validated ``[fieldshift.greenboot]`` table (keys in :data:`KEYS` order)."""
    cfg = validate_table(table, where)
    lines = ["# Written by fieldshift from the blueprint's [fieldshift.greenboot] table.", ""]
    for key in KEYS:
        if key.table not in table:
            continue
        value = getattr(cfg, key.table)
        if key.kind == "list":
            lines.append(f"{key.conf}=(" + " ".join(_quote(v) for v in value) + ")")
        elif key.kind == "bool":
            lines.append(f"{key.conf}={'true' if value else 'false'}")
        else:
            lines.append(f"{key.conf}={_quote(str(value))}")
    return "\n".join(lines) + "\n"

