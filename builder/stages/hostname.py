"""The host name: ``/etc/hostname``, as systemd-hostnamed reads it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from builder.stages import StageError

_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


@dataclass(frozen=True)
class HostnameOptions:
    """``customizations.hostname``; ``None`` keeps the package default."""

    hostname: str | None = None


def apply(root: Path, options: HostnameOptions) -> None:
    """Write ``/etc/hostname``."""
    if options.hostname is None:
        return
    if not _HOSTNAME.match(options.hostname):
        raise StageError(f'customizations.hostname: "{options.hostname}" is not a valid host name')
    path = root / "etc/hostname"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(options.hostname + "\n")
    os.chmod(path, 0o644)
