"""Kernel command line arguments recorded in the commit for the tools that deploy it.

bootc reads ``/usr/lib/bootc/kargs.d/*.toml`` (``kargs = [...]``); our image builder and agent read the
commit metadata key ``fieldshift.kargs``. ostree commits carry no kernel arguments of their own; an
rpm-ostree deployment gets them from the installer (kickstart ``bootloader --append``).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from builder.stages import StageError

KARGS_FILE = "usr/lib/bootc/kargs.d/10-fieldshift.toml"


@dataclass(frozen=True)
class KernelOptions:
    """``customizations.kernel.append`` split into arguments."""

    append: str = ""

    @property
    def kargs(self) -> tuple[str, ...]:
        try:
            return tuple(shlex.split(self.append))
        except ValueError as err:
            raise StageError(f"customizations.kernel.append: {err}") from None


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def apply(root: Path, options: KernelOptions) -> tuple[str, ...]:
    """Write the kargs.d file; returns the arguments (for the commit metadata)."""
    kargs = options.kargs
    if not kargs:
        return ()
    dest = root / KARGS_FILE
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("kargs = [" + ", ".join(_toml_str(k) for k in kargs) + "]\n")
    os.chmod(dest, 0o644)
    return kargs
