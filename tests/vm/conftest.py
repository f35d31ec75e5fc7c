"""Session fixtures of the VM tier: one lab (image, release commits), one device per test.

CI runs the tier on two pytest workers (``-n 2``, see ``.ci/run``): two devices boot at once, each with
one vCPU. Measured here on 2 cores (v1 image, power on to green): one 2-vCPU guest alone 37 s, one
1-vCPU guest alone 50 s, two 1-vCPU guests together 51 s, two 2-vCPU guests together 70 s. So a lone
device gets two vCPUs and a device sharing the host with another gets one.
The first worker to take the lock builds the lab, the others wait for it and load it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.vm.lab import Device, Lab

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
_PENDING: list[tuple[str, float]] = []  # wall times not yet attached to a test report (this process)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """v1 as a qcow2 disk, v2 (green) and v3 (red verdict) as commits in the same build repo."""
    started = time.monotonic()
    base = tmp_path_factory.getbasetemp()
    # Workers of one run have sibling base directories under the run's own; a lone process keeps to its own.
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "vmlab"
    failed = shared / "vmlab.failed"
    with _locked(shared / "vmlab.lock"):
        if failed.exists():
            pytest.fail(f"the lab build failed in another worker: {failed.read_text().strip()}", pytrace=False)
        the_lab = Lab.load(root)
        if the_lab is None:
            the_lab = Lab(root)
            try:
                the_lab.build("1.0.0", image=True)
                the_lab.build("2.0.0")
                the_lab.build("3.0.0", verdict="red")
            except BaseException as err:
                failed.write_text(f"{type(err).__name__}: {err}\n")
                the_lab.close()
                raise
            the_lab.save()
            _PENDING.append(("lab: image + 3 builds", time.monotonic() - started))
        else:
            _PENDING.append(("lab: loaded (built by another worker)", time.monotonic() - started))
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture()
def device(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Device]:
    """A fresh device (its own qcow2 overlay over the v1 disk) named after the test; powered off after."""
    dev = lab.device(request.node.name[:40], cpus=1 if WORKERS > 1 else 2)
    started = time.monotonic()
    try:
        yield dev
    finally:
        dev.stop()
        _PENDING.append((request.node.name, time.monotonic() - started))
        request.node.user_properties.extend(("vm_tier", line) for line in _PENDING)
        _PENDING.clear()


@pytest.fixture()
def vm_note(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line to the VM tier's summary (shown however the tests were distributed)."""
    return lambda text: request.node.user_properties.append(("vm_note", text))
