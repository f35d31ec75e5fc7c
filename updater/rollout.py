"""Phased rollout: a device's stable bucket and its wariness decide when a phased release applies.

The bucket is derived from ``/etc/machine-id`` with an application-specific keyed hash (HMAC-SHA256
keyed with a fieldshift constant, as systemd's ``sd_id128_get_machine_app_specific`` recommends), so the
raw machine id never leaves the device and other apps cannot correlate it. The same derivation gives
the default FleetLock node id.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from greenboot.errors import UserError

APP_KEY = b"fieldshift-agent/rollout/v1"
NODE_KEY = b"fieldshift-agent/node-id/v1"


class MachineIdError(UserError):
    """The machine id is missing or malformed."""


def read_machine_id(path: Path) -> str:
    """The 32-hex machine id from ``path``."""
    try:
        text = Path(path).read_text(encoding="ascii").strip().lower()
    except (OSError, UnicodeDecodeError) as err:
        raise MachineIdError(f"cannot read the machine id from {path}; run systemd-machine-id-setup") from err
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise MachineIdError(f"{path} does not hold a 32-hex-digit machine id")
    return text


def _digest(key: bytes, machine_id: str) -> bytes:
    return hmac.new(key, bytes.fromhex(machine_id), hashlib.sha256).digest()


def bucket(machine_id: str) -> float:
    """The device's stable position in [0, 1) for phased rollouts."""
    return int.from_bytes(_digest(APP_KEY, machine_id)[:8], "big") / 2.0**64


def node_id(machine_id: str) -> str:
    """An app-specific 32-hex id for this device (FleetLock client id, report source)."""
    return _digest(NODE_KEY, machine_id)[:16].hex()


def position(machine_id: str, wariness: float) -> float:
    """Where the device stands in a rollout: its bucket, pulled towards 0 (eager) or 1 (wary).

    ``wariness`` 0.5 keeps the plain bucket; 0 puts the device first, 1 last, like zincati's
    ``rollout_wariness`` knob.
    """
    b = bucket(machine_id)
    if wariness <= 0.5:
        return b * (wariness * 2)
    return b + (1.0 - b) * ((wariness - 0.5) * 2)


def admitted(rollout: float, machine_id: str, wariness: float) -> bool:
    """True when a release with ``rollout`` progress (0..1) has reached this device."""
    if rollout >= 1.0:
        return True
    if rollout <= 0.0:
        return False
    return position(machine_id, wariness) < rollout
