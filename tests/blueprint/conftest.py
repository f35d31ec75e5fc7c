"""Helpers for the blueprint tests: write a blueprint into a temp dir and load it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from builder.blueprint import Blueprint, load

LoadText = Callable[..., Blueprint]


@pytest.fixture
def load_text(tmp_path: Path) -> LoadText:
    """``load_text(toml, image_type=None, name="bp.toml", **kw)`` writes the text and loads it."""

    def _load(text: str, image_type: str | None = None, name: str = "bp.toml", **kwargs: Any) -> Blueprint:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return load(path, image_type=image_type, **kwargs)

    return _load
