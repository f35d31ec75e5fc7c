"""systemd service notifications (READY=1, STATUS=, WATCHDOG=1) over $NOTIFY_SOCKET, by hand.

The protocol is one unix datagram of ``KEY=value`` lines to the socket named in ``NOTIFY_SOCKET``
(a leading ``@`` means the abstract namespace), see systemd's ``sd_notify(3)``. Without the
variable every call is a no-op.
"""

from __future__ import annotations

import os
import socket
from typing import Mapping


class Notifier:
    """Talks to the service manager named by the environment (or to nobody)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_seconds = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0.0

    def send(self, **fields: str) -> bool:
        if not self.address:
            return False
        data = "".join(f"{k}={v}\n" for k, v in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(data, self.address)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> None:
        self.send(READY="1", **({"STATUS": status} if status else {}))

    def status(self, text: str) -> None:
        self.send(STATUS=text)

    def watchdog(self) -> None:
        self.send(WATCHDOG="1")

    def stopping(self) -> None:
        self.send(STOPPING="1")
