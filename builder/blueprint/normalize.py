"""The normalized form of a loaded blueprint: plain data keyed like the TOML, for ``show`` and hashing.

Defaults are filled in, plain passwords appear hashed, absent optional values are left out, and
keys keep osbuild's spelling (``tls-verify``, ``containers-storage``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import toml

from builder.blueprint.models import Blueprint, public_fields, toml_key


def to_data(value: Any) -> Any:
    """Plain dicts, lists and scalars for a model (TOML keys, ``None`` and empty tables dropped)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in public_fields(type(value)):
            item = to_data(getattr(value, f.name))
            if item is None or item == {}:
                continue
            out[toml_key(f)] = item
        return out
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [to_data(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def to_json_data(blueprint: Blueprint) -> dict[str, Any]:
    """The blueprint for ``show --json``: the normalized document plus what fieldshift computed."""
    return {
        "blueprint": to_data(blueprint),
        "image_type": blueprint.image_type,
        "source_digest": blueprint.source_digest,
        "source": str(blueprint.source_path) if blueprint.source_path else None,
    }


def to_toml(blueprint: Blueprint) -> str:
    """The normalized blueprint as TOML text (loadable again with :func:`builder.blueprint.load`)."""
    return toml.dumps(to_data(blueprint))
