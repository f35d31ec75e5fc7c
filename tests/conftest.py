"""Report of the VM tier's wall times, in the process that prints the summary.

Here rather than in ``tests/vm/conftest.py``: with ``-n 2`` (pytest-xdist) the tests run in worker
processes and only this top-level conftest is loaded by the controller, which receives each test's
report. The VM fixtures put ``("vm_tier", (label, seconds))`` and ``("vm_note", text)`` into
``user_properties``.
"""

from __future__ import annotations

import pytest

VM_TIER = pytest.StashKey[dict[str, list[float]]]()
VM_LINES = pytest.StashKey[list[tuple[str, float]]]()
VM_NOTES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[VM_LINES] = []
    config.stash[VM_NOTES] = []
    config.stash[VM_TIER] = {"start": [], "stop": []}
    config.pluginmanager.register(_Collector(config), "fieldshift-vm-tier-times")


class _Collector:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "vm" not in report.keywords:
            return
        span = self.config.stash[VM_TIER]
        if report.when == "setup" and hasattr(report, "start"):
            span["start"].append(report.start)
        if report.when == "teardown" and hasattr(report, "stop"):
            span["stop"].append(report.stop)
            # user_properties accumulate over the phases: the teardown report has the test's full list.
            for key, value in report.user_properties:
                if key == "vm_tier":
                    label, seconds = value  # type: ignore[misc]
                    self.config.stash[VM_LINES].append((str(label), float(seconds)))
                elif key == "vm_note":
                    self.config.stash[VM_NOTES].append(str(value))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    lines = config.stash.get(VM_LINES, [])
    span = config.stash.get(VM_TIER, {"start": [], "stop": []})
    if not lines:
        return
    terminalreporter.section("VM tier wall times")
    for label, seconds in lines:
        terminalreporter.write_line(f"{seconds:7.1f} s  {label}")
    for note in config.stash.get(VM_NOTES, []):
        terminalreporter.write_line(f"           {note}")
    if span["start"] and span["stop"]:
        workers = getattr(config.option, "numprocesses", None) or 1
        total = max(span["stop"]) - min(span["start"])
        terminalreporter.write_line(f"{total:7.1f} s  VM tier, first setup to last teardown "
                                    f"({workers} worker{'s' if workers != 1 else ''})")
