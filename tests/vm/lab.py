"""The VM tier's lab: our builder makes a debian-12 image and release commits, our publish signs releases,
a static HTTP server on the host serves them, and devices in QEMU reach it as ``10.0.2.2``.

One lab per test session (the image and commits are expensive): when the tier runs on several pytest
workers, one builds it and the others :meth:`Lab.load` it, each with its own HTTP server on the same
files. Each scenario publishes into its own release directory (``/<name>/`` on the server) and points the
device there with a drop-in in ``/etc/fieldshift/agent.d``, so scenarios do not see each other's releases.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from builder import compose
from builder.publish import PublishRequest, PublishResult, publish
from tests.httpserve import StaticServer
from tests.vm.machine import HOST_FROM_GUEST, Machine, MachineError

ROOT = Path(__file__).resolve().parents[2]
BLUEPRINT = ROOT / "blueprints" / "debian-edge.toml.j2"
CHANNEL = "stable"
BOOT_TIMEOUT = 240.0


def apt_sources() -> Path:
    """The host's own apt sources file: mmdebstrap's mirror argument, as is."""
    for p in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if p.is_file():
            return p
    raise FileNotFoundError("no apt sources file on this host (/etc/apt/sources.list.d/debian.sources)")


def cache_dir() -> Path:
    """The compose cache shared by every run on this machine (the mmdebstrap tree is built once)."""
    return Path(os.environ.get("FIELDSHIFT_VM_CACHE") or compose.default_cache_dir())


@dataclass
class Lab:
    """Keys, a build repo, a server and the v1 disk image."""

    root: Path
    boot_attempts: int = 2
    server: StaticServer = field(init=False)
    commits: dict[str, str] = field(default_factory=dict)
    image: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Absolute: the blueprint reads the trusted key path relative to its own directory, and
        # .ci/demo passes a relative work directory.
        self.root = self.root.resolve()
        (self.root / "srv").mkdir(parents=True, exist_ok=True)
        keys = self.root / "keys"
        self.key = keys / "catalog.key"
        self.pub = keys / "catalog.pub"
        self.repo = self.root / "build-repo"
        if not self.key.exists():
            subprocess.run([sys.executable, "-m", "builder.cli", "keys", "generate", "--out", str(keys)],
                           check=True, capture_output=True, cwd=ROOT)
        self.server = StaticServer(self.root / "srv").start()

    def close(self) -> None:
        self.server.stop()

    @property
    def _saved(self) -> Path:
        return self.root / "lab.json"

    def save(self) -> None:
        """Record what was built (commits, disk) for :meth:`load` in other processes; written atomically."""
        tmp = self._saved.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"commits": self.commits, "image": str(self.image) if self.image else None,
                                   "boot_attempts": self.boot_attempts}))
        tmp.replace(self._saved)

    @classmethod
    def load(cls, root: Path) -> Lab | None:
        """The lab another process built and saved in ``root``, with a server of this process; else None."""
        try:
            saved = json.loads((root / "lab.json").read_text())
        except FileNotFoundError:
            return None
        lab = cls(root, boot_attempts=saved["boot_attempts"])
        lab.commits = dict(saved["commits"])
        lab.image = Path(saved["image"]) if saved["image"] else None
        return lab

    def url(self, name: str) -> str:
        """The release URL of release directory ``name`` as the guest sees it."""
        return f"http://{HOST_FROM_GUEST}:{self.server.port}/{name}"

    def variables(self, version: str, verdict: str) -> dict[str, str]:
        return {
            "version": version,
            "verdict": verdict,
            "test_console": "1",
            "release_url": self.url("unset"),
            "trusted_key": str(self.pub),
            "boot_attempts": str(self.boot_attempts),
        }

    def build(self, version: str, verdict: str = "green", *, image: bool = False) -> str:
        """Build release ``version`` (and the qcow2 disk when ``image``); returns the commit."""
        started = time.monotonic()
        out = self.root / f"out-{version}" if image else None
        result = compose.build(
            compose.BuildRequest(
                blueprint=BLUEPRINT,
                repos=(apt_sources(),),
                ostree_repo=self.repo,
                variables=self.variables(version, verdict),
                output=out,
                cache_dir=cache_dir(),
                image_type="qcow2" if image else None,
                source_date_epoch=1700000000,
            )
        )
        self.commits[version] = result.commit
        if out is not None:
            self.image = out / "disk.qcow2"
        self.timings[f"build {version}{' + image' if image else ''}"] = time.monotonic() - started
        return result.commit

    def publish(self, name: str, version: str) -> PublishResult:
        """Publish built release ``version`` into release directory ``name`` (update deltas, no scratch)."""
        started = time.monotonic()
        result = publish(
            PublishRequest(
                build_repo=self.repo,
                ref="debian/12/x86_64/edge",
                channel=CHANNEL,
                release_dir=self.root / "srv" / name,
                keys=(self.key,),
                commit=self.commits[version],
                version=version,
                scratch_delta=False,
            )
        )
        self.timings[f"publish {name} {version}"] = time.monotonic() - started
        return result

    def device(self, name: str, cpus: int = 2) -> Device:
        assert self.image is not None, "build the image first"
        return Device(Machine(self.image, self.root / "vms" / name, cpus=cpus))


@dataclass
class Device:
    """A booted image seen through its root shell: agent and greenboot status, release source, data."""

    vm: Machine

    def boot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Power on and wait for the shell; returns the seconds it took."""
        started = time.monotonic()
        self.vm.start()
        self.vm.wait_shell(timeout)
        return time.monotonic() - started

    def sh(self, command: str, timeout: float = 120, check: bool = True) -> str:
        return self.vm.run(command, timeout, check=check)[1]

    def json(self, command: str, timeout: float = 120) -> Any:
        out = self.sh(command, timeout)
        start = out.find("{")
        return json.loads(out[start:])

    def agent(self) -> dict[str, Any]:
        return self.json("fieldshift-agent status --json 2>/dev/null")

    def greenboot(self) -> dict[str, Any]:
        return self.json("fieldshift-greenboot --json status 2>/dev/null")

    def boot_id(self) -> str:
        return self.sh("cat /proc/sys/kernel/random/boot_id").strip()

    def follow(self, url: str, **agent: Any) -> None:
        """Point the agent at ``url`` (a drop-in in /etc, kept by ostree across updates)."""
        lines = [f'release_url = ["{url}"]'] + [f"{k} = {json.dumps(v)}" for k, v in agent.items()]
        body = "\\n".join(lines)
        # Synced like any careful config tool: the power-cut scenario pulls the plug seconds later, and an
        # unsynced drop-in lost to the cut (ext4 commits every 5 s) would leave the agent on the image's
        # defaults (strategy immediate: a reboot the scenario did not ask for).
        self.sh(f"mkdir -p /etc/fieldshift/agent.d && printf '{body}\\n' > /etc/fieldshift/agent.d/90-vm.toml.new"
                " && sync /etc/fieldshift/agent.d/90-vm.toml.new"
                " && mv /etc/fieldshift/agent.d/90-vm.toml.new /etc/fieldshift/agent.d/90-vm.toml && sync")

    def boots(self) -> int:
        """How many times the kernel started since this QEMU process was powered on."""
        return len(re.findall(r"Linux version \d", self.vm.console()))

    def settle(self, predicate: Callable[[Device], bool], timeout: float) -> None:
        """Wait (through reboots) until ``predicate(self)`` holds on a booted, answering device."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.vm.wait_shell(max(5.0, deadline - time.monotonic()))
                if predicate(self):
                    return
                last = None
            except (MachineError, ValueError) as err:  # rebooting under us, or half-written output
                last = err
                if not self.vm.running:
                    raise
                self.vm.reset_shell()
            time.sleep(2)
        raise MachineError(f"device did not settle within {timeout:.0f} s (last error: {last}); console tail:\n"
                           + self.vm.console()[-3000:])

    def stop(self) -> None:
        self.vm.stop()


def greenboot_verdict(dev: Device) -> str | None:
    """This boot's greenboot verdict ("green"/"red"), or None while the checks still run."""
    latest = dev.greenboot().get("latest_boot") or {}
    if latest.get("boot_id") and latest.get("boot_id") != dev.boot_id():
        return None
    return latest.get("verdict")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
