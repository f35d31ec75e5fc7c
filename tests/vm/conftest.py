"""Session fixtures of the VM tier: one lab (image, release commits, HTTP server), scenario wall times."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.vm.lab import Device, Lab

TIMINGS = pytest.StashKey[list[tuple[str, float]]]()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """v1 as a qcow2 disk, v2 (green) and v3 (red verdict) as commits in the same build repo."""
    started = time.monotonic()
    the_lab = Lab(Path(tmp_path_factory.mktemp("vmlab")))
    try:
        the_lab.build("1.0.0", image=True)
        the_lab.build("2.0.0")
        the_lab.build("3.0.0", verdict="red")
        _record(request.config, "lab: image + 3 builds", time.monotonic() - started)
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture()
def device(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Device]:
    """A fresh device (its own qcow2 overlay over the v1 disk) named after the test; powered off after."""
    dev = lab.device(request.node.name[:40])
    started = time.monotonic()
    try:
        yield dev
    finally:
        dev.stop()
        _record(request.config, request.node.name, time.monotonic() - started)


def _record(config: pytest.Config, name: str, seconds: float) -> None:
    config.stash.setdefault(TIMINGS, []).append((name, seconds))
    print(f"\n[vm tier] {name}: {seconds:.0f} s")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    timings = config.stash.get(TIMINGS, [])
    if timings:
        terminalreporter.section("VM tier wall times")
        for name, seconds in timings:
            terminalreporter.write_line(f"{seconds:7.1f} s  {name}")
