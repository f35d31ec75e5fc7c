"""The ``[fieldshift]`` table: agent configuration, greenboot.conf, trusted catalog keys, our own payload.

- ``/usr/lib/fieldshift/agent.d/40-release.toml``: ``channel``, ``release_url``, ``trusted_keys`` (paths
  on the device); ``50-blueprint.toml``: the ``[fieldshift.agent]`` table verbatim, checked by
  ``updater.config.validate_table``.
- ``/etc/greenboot/greenboot.conf``: ``GREENBOOT_MAX_BOOT_ATTEMPTS`` and friends (greenboot's names).
- ``/usr/lib/fieldshift/keys/``: the trusted public keys.
- Payload (:func:`install_payload`, shared with the debian image builder): the ``greenboot`` and
  ``updater`` Python packages under ``/usr/lib/fieldshift/python``, launchers in ``/usr/bin``, greenboot's
  units through ``greenboot.install.install_into`` and the agent's units from ``updater/data``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import toml

from builder.stages import StageError

AGENT_DIR = "usr/lib/fieldshift/agent.d"
KEYS_DIR = "usr/lib/fieldshift/keys"
PYTHON_DIR = "usr/lib/fieldshift/python"
GREENBOOT_CONF = "etc/greenboot/greenboot.conf"
PROJECT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "fieldshift-agent": ("updater", "updater.cli:main"),
    "fieldshift-greenboot": ("greenboot", "greenboot.cli:main"),
}
UNIT_SUFFIXES = (".service", ".timer", ".target", ".path", ".socket")


@dataclass(frozen=True)
class FieldshiftOptions:
    """The ``[fieldshift]`` settings, trusted key paths already resolved against the blueprint."""

    channel: str = "stable"
    release_url: str | None = None
    trusted_keys: tuple[Path, ...] = ()
    install_agent: bool = True
    install_greenboot: bool = True
    agent: Mapping[str, Any] = field(default_factory=dict)
    max_boot_attempts: int = 3
    disabled_healthchecks: tuple[str, ...] = ()
    watchdog_check_enabled: bool | None = None
    watchdog_grace_period: int | None = None
    payload_source: Path = PROJECT


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _greenboot_conf(root: Path, o: FieldshiftOptions) -> None:
    values = {"GREENBOOT_MAX_BOOT_ATTEMPTS": str(o.max_boot_attempts)}
    if o.disabled_healthchecks:
        values["DISABLED_HEALTHCHECKS"] = "(" + " ".join(f'"{c}"' for c in o.disabled_healthchecks) + ")"
    if o.watchdog_check_enabled is not None:
        values["GREENBOOT_WATCHDOG_CHECK_ENABLED"] = "true" if o.watchdog_check_enabled else "false"
    if o.watchdog_grace_period is not None:
        values["GREENBOOT_WATCHDOG_GRACE_PERIOD"] = str(o.watchdog_grace_period)
    path = root / GREENBOOT_CONF
    lines = path.read_text().splitlines() if path.exists() else ["# written by fieldshift from [fieldshift.greenboot]"]
    out = []
    for line in lines:
        key = line.split("=", 1)[0].replace("export ", "").strip()
        if key in values:
            out.append(f"{key}={values.pop(key)}")
        else:
            out.append(line)
    out += [f"{k}={v}" for k, v in values.items()]
    _write(path, "\n".join(out) + "\n")


def _launcher(module_target: str) -> str:
    module, _, func = module_target.partition(":")
    return (
        "#!/usr/bin/python3\n"
        "import sys\n"
        f'sys.path.insert(0, "/{PYTHON_DIR}")\n'
        f"from {module} import {func}\n"
        f"sys.exit({func}())\n"
    )


def _byte_compile(root: Path, package: Path) -> bool:
    """Ship ``package`` byte-compiled when the image's Python is the builder's own version.

    /usr is read-only on an ostree device, so Python can never cache bytecode there: without .pyc
    files every agent and greenboot run compiles all its modules again, seconds of CPU per boot-time
    unit under emulation. Hash-checked .pyc files (PEP 552) stay valid although ostree stores every
    mtime as 0, and a changed source is still noticed. Compiled in a fresh interpreter so the output
    does not depend on this process's state. Returns False when the versions differ (then the image
    simply runs from source).
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not (root / "usr/bin" / version).exists():
        return False
    shown = "/" + package.relative_to(root).as_posix()
    done = subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "checked-hash",
                           "-d", shown, str(package)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StageError(f"fieldshift: byte-compiling {shown} failed: {(done.stdout + done.stderr).strip()[-500:]}")
    return True


def install_payload(root: Path, *, agent: bool, greenboot: bool, source: Path = PROJECT) -> tuple[str, ...]:
    """Copy our device packages, launchers and units into ``root``; returns the units to enable."""
    packages = (["greenboot"] if (agent or greenboot) else []) + (["updater"] if agent else [])
    units: list[str] = []
    for pkg in packages:
        src = source / pkg
        if not src.is_dir():
            raise StageError(f"fieldshift: the {pkg} package is missing from {source}")
        dest = root / PYTHON_DIR / pkg
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _byte_compile(root, dest)
        if pkg == "greenboot":
            continue  # greenboot installs (and enables) its own units: installed below
        for unit in sorted(p for p in (src / "data").rglob("*") if p.suffix in UNIT_SUFFIXES) if (
                src / "data").is_dir() else []:
            target = root / "usr/lib/systemd/system" / unit.name
            _write(target, unit.read_text())
            if "[Install]" in unit.read_text():
                units.append(unit.name)
    if greenboot:
        from greenboot.install import install_into

        install_into(root, microshift=(root / "usr/bin/microshift").exists())
    for script, (pkg, entry) in ENTRY_POINTS.items():
        if pkg in packages and (pkg == "updater" and agent or pkg == "greenboot" and greenboot):
            _write(root / "usr/bin" / script, _launcher(entry), 0o755)
    return tuple(units)


def _agent_table(table: Mapping[str, Any]) -> dict[str, Any]:
    try:
        from updater.config import validate_table
    except ImportError:  # the agent's config module is optional for the builder
        return dict(table)
    validate_table(dict(table), "fieldshift.agent")
    return dict(table)


def apply(root: Path, options: FieldshiftOptions) -> tuple[str, ...]:
    """Write the settings and payload; returns the units the services stage must enable."""
    device_keys = []
    for i, key in enumerate(options.trusted_keys):
        if not key.is_file():
            raise StageError(f"fieldshift.trusted_keys[{i}]: {key} is not a readable file")
        dest = root / KEYS_DIR / key.name
        _write(dest, key.read_text())
        device_keys.append(f"/{KEYS_DIR}/{key.name}")
    release: dict[str, Any] = {"channel": options.channel}
    if options.release_url:
        release["release_url"] = [options.release_url]
    if device_keys:
        release["trusted_keys"] = device_keys
    _write(root / AGENT_DIR / "40-release.toml", "# from the blueprint's [fieldshift] table\n" + toml.dumps(release))
    if options.agent:
        table = _agent_table(options.agent)
        _write(root / AGENT_DIR / "50-blueprint.toml", "# [fieldshift.agent] of the blueprint\n" + toml.dumps(table))
    _greenboot_conf(root, options)
    return install_payload(root, agent=options.install_agent, greenboot=options.install_greenboot,
                           source=options.payload_source)
