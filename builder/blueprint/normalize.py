"""The normalized form of a loaded blueprint: plain data keyed like the TOML, for ``show`` and hashing.

Defaults are filled in, plain passwords appear hashed, absent optional values are left out, and
keys keep osbuild's spelling (``tls-verify``, ``containers-storage``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.blueprint.models import Blueprint, public_fields, toml_key

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_data(value: Any) -> Any:
    """Plain dicts, lists and scalars for a model, keyed like the TOML.

    ``None``, empty strings, empty arrays and empty tables are left out; every other value,
    defaults included, is kept so the output shows what fieldshift will build.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in public_fields(type(value)):
            item = to_data(getattr(value, f.name))
            if item is None or (isinstance(item, (str, list, dict)) and not item):
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
    return dumps(to_data(blueprint))


def dumps(data: Mapping[str, Any]) -> str:
    """TOML text for plain data (tables, arrays, strings, numbers, booleans)."""
    lines: list[str] = []
    _emit_table(lines, [], dict(data))
    return "\n".join(lines).strip() + "\n"


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _emit_table(lines: list[str], prefix: list[str], table: Mapping[str, Any], header: str = "") -> None:
    """Scalars and inline arrays first, then sub-tables, then arrays of tables (TOML's ordering rule).

    A ``[table]`` header holding only sub-tables is left out: TOML defines it implicitly.
    """
    plain = [(k, v) for k, v in table.items() if not isinstance(v, Mapping) and not _is_table_array(v)]
    if header and (plain or len(plain) == len(table) or header.startswith("[[")):
        lines += ["", header]
    for k, v in plain:
        lines.append(f"{_key(k)} = {toml_value(v)}")
    for k, v in table.items():
        if isinstance(v, Mapping):
            _emit_table(lines, prefix + [k], v, f"[{'.'.join(_key(p) for p in prefix + [k])}]")
    for k, v in table.items():
        if _is_table_array(v):
            for item in v:
                _emit_table(lines, prefix + [k], item, f"[[{'.'.join(_key(p) for p in prefix + [k])}]]")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (strings quoted and escaped, lists and tables inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML forbids raw DEL
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))
