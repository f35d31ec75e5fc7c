"""System locale and console keymap: ``/etc/locale.conf`` ``LANG=`` and ``/etc/vconsole.conf`` ``KEYMAP=``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocaleOptions:
    """``[customizations.locale]``: the first language becomes ``LANG``."""

    languages: tuple[str, ...] = ()
    keyboard: str | None = None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, 0o644)


def apply(root: Path, options: LocaleOptions) -> None:
    """Write the locale and keymap that are given."""
    if options.languages:
        _write(root / "etc/locale.conf", f"LANG={options.languages[0]}\n")
    if options.keyboard:
        vconsole = root / "etc/vconsole.conf"
        old = vconsole.read_text().splitlines() if vconsole.exists() else []
        lines = [x for x in old if not x.startswith("KEYMAP=")]
        _write(vconsole, "".join(x + "\n" for x in lines) + f"KEYMAP={options.keyboard}\n")
