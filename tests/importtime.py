"""Which modules a Python process imported, from its ``PYTHONPROFILEIMPORTTIME=1`` stderr."""

from __future__ import annotations


def imported(stderr: str) -> set[str]:
    """Module names from ``import time: self | cumulative | name`` lines (nesting indentation removed)."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
