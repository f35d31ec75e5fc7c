"""Journal messages with stable MESSAGE_IDs, written with journald's native datagram protocol.

Fields go to ``/run/systemd/journal/socket`` as ``KEY=value`` lines (values holding a newline use the
length-prefixed binary form, see systemd's ``src/journal/journald-native.c``). Without the socket the
message goes to stderr as one line, so tests and containers still see it. No extra dependency.
"""

from __future__ import annotations

import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# Stable identifiers: tools and alerting may match on these forever; never change or reuse one.
MESSAGE_IDS: Mapping[str, str] = {
    "check_failed": "9013e49ea9b543d39f2ec9a4c9f5afe1",
    "update_found": "980f24baee3e40caa6a29ed6adabf2f4",
    "download_done": "7208860d58ed4014b929c482989964e9",
    "download_failed": "32d0627c9ee649a5acfb6012f6f919b2",
    "data_protected": "13008d4c97c14f61b3105bb47d4384a7",
    "staged": "7bc18627cb78454e95966b165edc4c9f",
    "reboot": "0a3f63c0d95341bdb020e220471846e0",
    "update_succeeded": "ceb8099342d545208c7949809426d064",
    "rolled_back": "f3787407c1f444d8967db610fd4febc8",
    "data_restored": "f2f0a3362af0437ea437f0dccf11b88a",
    "step_failed": "4428f47382db4cd59b9757159471f42b",
    "reboot_deferred": "b2db98f6178f41f7a056164f7c88b3e7",
}

PRIORITY = {"err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}


def _field(key: str, value: str) -> bytes:
    data = value.encode("utf-8", errors="replace")
    if b"\n" in data:
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


@dataclass
class Journal:
    """Sends structured messages; ``socket_path`` missing means stderr."""

    socket_path: Path
    identifier: str = "fieldshift-agent"

    def send(self, event: str, message: str, *, priority: str = "info", **fields: str) -> None:
        """Log ``message`` under the stable id of ``event`` with extra upper-case ``fields``."""
        payload = [
            _field("MESSAGE", message),
            _field("MESSAGE_ID", MESSAGE_IDS[event]),
            _field("PRIORITY", str(PRIORITY[priority])),
            _field("SYSLOG_IDENTIFIER", self.identifier),
            _field("FIELDSHIFT_EVENT", event),
        ]
        payload += [_field("FIELDSHIFT_" + k.upper(), str(v)) for k, v in sorted(fields.items())]
        if self._send(b"".join(payload)):
            return
        extra = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
        print(f"{self.identifier}[{event}]: {message}" + (f" ({extra})" if extra else ""), file=sys.stderr,
              flush=True)

    def _send(self, data: bytes) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(data, str(self.socket_path))
            return True
        except OSError:
            return False
