"""Messages to the journal with a priority, the way greenboot writes them (``<N>text`` on stdout).

Under systemd (``JOURNAL_STREAM`` set) stdout goes to the journal and a leading ``<N>`` sets the
syslog priority of the line (sd-daemon(3)); on a terminal the prefix is left out.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional, TextIO

EMERG, ALERT, CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = range(8)


@dataclass(frozen=True)
class Journal:
    """Where messages go; ``prefix`` adds the ``<N>`` priority (on by default under systemd)."""

    stream: Optional[TextIO] = None
    prefix: Optional[bool] = None
    quiet: bool = False

    def emit(self, priority: int, message: str) -> None:
        if self.quiet:
            return
        stream = self.stream or sys.stdout
        prefix = self.prefix if self.prefix is not None else bool(os.environ.get("JOURNAL_STREAM"))
        for line in message.splitlines() or [""]:
            stream.write(f"<{priority}>{line}\n" if prefix else f"{line}\n")
        stream.flush()
