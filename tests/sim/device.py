"""A simulated device for the update agent: a real ostree sysroot, the simulated GRUB, real agent code.

Only the reboot is simulated: the agent's reboot hook sets a flag, and :meth:`Device.boot` plays a
boot: :class:`tests.sim.firmware.Firmware` applies GRUB's boot counting to the real grubenv and picks
a real BLS entry (writing ``proc/cmdline`` and a fresh boot id under the root), the agent's early-boot
``reconcile`` runs, then the health checks of the booted deployment run (its own
``usr/lib/greenboot/check/required.d`` scripts, through greenboot's script runner) and a green boot is
recorded with :func:`greenboot.bootcount.mark_green`, exactly the grubenv change greenboot makes.

Releases are published with the builder's own ``publish`` (a signed catalog, an archive repo with
static deltas), from commits made with :mod:`tests.sim.sysroot` so they deploy like a real OS tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from tests.sim.firmware import Boot, Firmware
from tests.sim.sysroot import REF, Sysroot

MACHINE_ID = "0123456789abcdef0123456789abcdef"
OSNAME = "fieldos"
GOOD_CHECK = "#!/bin/sh\nexit 0\n"
BAD_CHECK = "#!/bin/sh\necho 'microshift did not become ready' >&2\nexit 1\n"


def _ostree(*args: str) -> str:
    env = dict(os.environ, OSTREE_SYSROOT_DEBUG="mutable-deployments")
    proc = subprocess.run(["ostree", *args], capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ostree {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class ReleaseSite:
    """A build repo plus a published release directory signed with a fresh key."""

    base: Path
    build: Sysroot = field(init=False)
    release_dir: Path = field(init=False)
    key: Path = field(init=False)
    pub: Path = field(init=False)
    commits: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from builder import keys

        self.build = Sysroot.create(self.base / "build")
        self.release_dir = self.base / "release"
        pair = keys.generate(self.base / "keys")
        self.key = pair.private_key
        self.pub = pair.public_key

    def commit(self, version: str, *, healthy: bool = True, payload: str = "") -> str:
        files = {"usr/lib/greenboot/check/required.d/40-app.sh": GOOD_CHECK if healthy else BAD_CHECK,
                 "usr/share/fieldos/version": f"{version}\n{payload}"}
        checksum = self.build.commit(version, files=files)
        self.commits[version] = checksum
        return checksum

    def publish(self, version: str, *, healthy: bool = True, barrier: bool = False,
                rollout_hours: Optional[float] = None, payload: str = "", channel: str = "stable",
                now: Optional[datetime] = None) -> str:
        from builder.publish import PublishRequest, publish

        checksum = self.commits.get(version) or self.commit(version, healthy=healthy, payload=payload)
        publish(PublishRequest(build_repo=self.build.repo, ref=REF, channel=channel, release_dir=self.release_dir,
                               keys=(self.key,), commit=checksum, version=version, barrier=barrier,
                               rollout_hours=rollout_hours), now=now)
        return checksum

    def withdraw(self, version: str, channel: str = "stable") -> None:
        from builder.publish import withdraw

        withdraw(self.release_dir, channel, version, (self.key,))


@dataclass
class Device:
    """One simulated device rooted at ``root`` (sysroot, /boot, grubenv, proc/ and /var all inside)."""

    root: Path
    site: ReleaseSite
    config: Dict[str, Any] = field(default_factory=dict)
    reboots_requested: int = 0
    greenboot_fallback: bool = True  # run greenboot's fallback-check before the agent's reconcile
    boots: List[Boot] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, site: ReleaseSite, base_version: str = "1", **config: Any) -> Device:
        sysroot = Sysroot.create(root)
        checksum = site.commits.get(base_version) or site.commit(base_version)
        _ostree("pull-local", f"--repo={sysroot.repo}", str(site.build.repo), checksum)
        sysroot.deploy(checksum)
        from greenboot.grubenv import GrubEnv

        (root / "boot/grub2").mkdir(parents=True, exist_ok=True)
        GrubEnv(root / "boot/grub2/grubenv").create()
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc/machine-id").write_text(config.pop("machine_id", MACHINE_ID) + "\n")
        dev = cls(root, site, config)
        dev.write_config()
        dev.boot()
        return dev

    @property
    def var(self) -> Path:
        return self.root / "ostree/deploy" / OSNAME / "var"

    @property
    def data_dir(self) -> Path:
        return self.var / "lib/microshift"

    @property
    def state_dir(self) -> Path:
        return self.var / "lib/fieldshift/agent"

    @property
    def config_path(self) -> Path:
        return self.root / "agent.toml"

    @property
    def grubenv(self) -> Path:
        return self.root / "boot/grub2/grubenv"

    def write_config(self) -> None:
        base: Dict[str, Any] = {
            "channel": "stable",
            "source_dir": str(self.site.release_dir),
            "trusted_keys": [str(self.site.pub)],
            "poll_jitter_seconds": 0,
            "backoff_initial_seconds": 1,
            "backoff_max_seconds": 2,
            "boot_attempts": 2,
            "data_paths": [str(self.data_dir)],
            "min_free_bytes": 0,
            "reboot_command": ["touch", str(self.root / "reboot-requested")],
        }
        base.update(self.config)
        base = {k: v for k, v in base.items() if v is not None}
        paths = {
            "sysroot": str(self.root),
            "state_dir": str(self.state_dir),
            "grubenv": str(self.grubenv),
            "greenboot_root": str(self.root),
            "kernel_cmdline": str(self.root / "proc/cmdline"),
            "booted_root": str(self.root / "proc/1/root"),
            "boot_id": str(self.root / "proc/sys/kernel/random/boot_id"),
            "machine_id": str(self.root / "etc/machine-id"),
            "journal_socket": str(self.root / "run/no-journal"),
            "prometheus_textfile": str(self.root / "metrics/fieldshift_agent.prom"),
            "microshift_marker": str(self.root / "usr/bin/microshift"),
        }
        lines = [f"{k} = {json.dumps(v)}" for k, v in base.items() if not isinstance(v, list) or
                 not v or not isinstance(v[0], dict)]
        for k, v in base.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                for item in v:
                    lines.append(f"[[{k}]]")
                    lines += [f"{ik} = {json.dumps(iv)}" for ik, iv in item.items()]
        lines.append("[paths]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in paths.items()]
        self.config_path.write_text("\n".join(lines) + "\n")

    # ---- the agent, in process or as a real subprocess

    def agent(self, now: Optional[Callable[[], datetime]] = None, **kwargs: Any) -> Any:
        from updater import config
        from updater.agent import Agent, utcnow

        cfg = config.load([self.config_path])
        return Agent(cfg, now=now or utcnow, reboot_fn=self._reboot, **kwargs)

    def _reboot(self) -> None:
        self.reboots_requested += 1

    def cli(self, *args: str, env: Optional[Dict[str, str]] = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        full = dict(os.environ, **(env or {}))
        return subprocess.run([sys.executable, "-m", "updater.cli", "--config", str(self.config_path), *args],
                              capture_output=True, text=True, env=full, timeout=timeout, check=False)

    def popen(self, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        full = dict(os.environ, **(env or {}))
        return subprocess.Popen([sys.executable, "-m", "updater.cli", "--config", str(self.config_path), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)

    def state(self) -> Dict[str, Any]:
        try:
            return json.loads((self.state_dir / "state.json").read_text())
        except FileNotFoundError:
            return {"phase": "idle"}

    def state_obj(self) -> Any:
        from updater.state import StateStore

        return StateStore(self.state_dir).load()

    # ---- boots

    def boot(self, *, reconcile: Optional[Callable[[], Any]] = None) -> Boot:
        """Power on, in the order the units run: GRUB picks an entry; greenboot's fallback-check;
        the agent's reconcile (before MicroShift); greenboot's health check, then green or red."""
        fw = Firmware(self.root, grubenv=self.grubenv)
        booted = fw.boot()
        (self.root / "reboot-requested").unlink(missing_ok=True)
        ctx = self._greenboot()
        if self.greenboot_fallback:
            from greenboot.fallback import check_fallback

            check_fallback(ctx)
        if reconcile is not None:
            reconcile()
        elif (self.state_dir / "state.json").exists():
            self.agent().reconcile()
        self.greenboot(ctx)
        self.boots.append(booted)
        return booted

    def _greenboot(self) -> Any:
        from greenboot.config import load as load_gb
        from greenboot.healthcheck import Context
        from greenboot.layout import Layout

        layout = Layout.at(self.root)
        return Context(layout, load_gb(layout.root))

    def deployment_dir(self, name: str) -> Path:
        return self.root / "ostree/deploy" / OSNAME / "deploy" / name

    def greenboot(self, ctx: Any) -> bool:
        """greenboot's health check on the booted deployment's scripts; green -> mark boot_success."""
        from greenboot.healthcheck import check, green, red

        result = check(ctx)
        if result.green:
            green(ctx)
        else:
            red(ctx)
        return bool(result.green)

    def boot_until_settled(self, limit: int = 6) -> Boot:
        """Boot, and keep rebooting while greenboot is red and GRUB still counts (red.d reboots)."""
        booted = self.boot()
        for _ in range(limit):
            from greenboot import bootcount

            count = bootcount.read(self.grubenv)
            if count.success == "1" or not count.armed or count.fallback:
                break
            booted = self.boot()
        return booted

    def deployments(self) -> List[Any]:
        return Sysroot(self.root, osname=OSNAME).deployments()

    def booted_version(self) -> str:
        return self.boots[-1].version if self.boots else ""


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
