"""Report of the VM tier's wall times, in the process that prints the summary.

Here rather than in ``tests/vm/conftest.py``: with ``-n 2`` (pytest-xdist) the tests run in worker
processes and only this top-level conftest is loaded by the controller, which receives each test's
report. The VM fixtures put ``("vm_tier", (label, seconds))`` and ``("vm_note", text)`` into
``user_properties``.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(VmTierReport(), "fieldshift-vm-tier-report")


class VmTierReport:
    def __init__(self) -> None:
        self.lines: list[tuple[str, float]] = []
        self.notes: list[str] = []
        self.starts: list[float] = []
        self.stops: list[float] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "vm" not in report.keywords:
            return
        if report.when == "setup" and hasattr(report, "start"):
            self.starts.append(report.start)
        if report.when == "teardown" and hasattr(report, "stop"):
            self.stops.append(report.stop)
            # user_properties accumulate over the phases: the teardown report has the test's full list.
            for key, value in report.user_properties:
                if key == "vm_tier":
                    label, seconds = value  # type: ignore[misc]
                    self.lines.append((str(label), float(seconds)))
                elif key == "vm_note":
                    self.notes.append(str(value))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
        if not self.lines:
            return
        terminalreporter.section("VM tier wall times")
        for label, seconds in self.lines:
            terminalreporter.write_line(f"{seconds:7.1f} s  {label}")
        for note in self.notes:
            terminalreporter.write_line(f"           {note}")
        if self.starts and self.stops:
            workers = getattr(config.option, "numprocesses", None) or 1
            terminalreporter.write_line(f"{max(self.stops) - min(self.starts):7.1f} s  VM tier, first setup to "
                                        f"last teardown ({workers} worker{'s' if workers != 1 else ''})")
