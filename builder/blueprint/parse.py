"""Turn a parsed TOML table into the blueprint models, checking keys and types against them.

The models in :mod:`builder.blueprint.models` are the schema: this module walks their type
annotations, so a key is accepted exactly when a model has a field for it. Errors name the full key
path (``customizations.user[0].name``); an unknown key comes with a "did you mean" suggestion.
Semantic rules (patterns, paths, cross-field checks) live in :mod:`builder.blueprint.rules`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from builder.blueprint.errors import BlueprintError
from builder.blueprint.models import public_fields, toml_key

T = TypeVar("T")

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")
# Fields that take a size: a byte count or a string with a unit, as osbuild's datasizes.Parse.
_SIZE_FIELDS = {"minsize", "size"}
# osbuild's deprecated alias: [[customizations.filesystem]] size = ... means minsize.
_ALIASES = {("Filesystem", "size"): "minsize"}


def _misplaced(cls: type, name: str) -> str:
    """A hint when a top-level key belongs in ``[customizations]`` or ``[fieldshift]``."""
    if not (dataclasses.is_dataclass(cls) and cls.__name__ == "Blueprint"):
        return ""
    hints = _hints(cls)
    for table in ("customizations", "fieldshift"):
        inner = hints[table]
        if name in {toml_key(f) for f in public_fields(inner)}:
            return f"; it belongs in [{table}] ({table}.{name})"
    return ""


@dataclass(frozen=True)
class Context:
    """What conversion needs besides the table: where relative paths are anchored and the file name."""

    source: str
    base_dir: Path


def describe(value: object) -> str:
    """Name a TOML value's type the way a person reading the file would."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def join(path: str, name: str) -> str:
    """Append a key to a key path (quoted like TOML when it is not a bare key)."""
    shown = name if _BARE_KEY.match(name) else json.dumps(name)
    return f"{path}.{shown}" if path else shown


def suggestion(name: str, candidates: typing.Iterable[str]) -> str:
    """`` (did you mean "x"?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower().replace("-", "_"): c for c in candidates}
        hit = lowered.get(name.lower().replace("-", "_"))
        close = [hit] if hit else []
    return f'; did you mean "{close[0]}"?' if close else ""


def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a model (cached: resolving string annotations is slow)."""
    return _cached_hints(cls)


@functools.cache
def _cached_hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class Converter:
    """Builds model instances from plain TOML data, raising :class:`BlueprintError` on any mismatch."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def error(self, path: str, message: str) -> BlueprintError:
        """An error located at ``path`` in the source file."""
        where = f"{self.ctx.source}: {path}" if path else self.ctx.source
        return BlueprintError(f"{where}: {message}")

    def model(self, cls: type[T], table: object, path: str) -> T:
        """Convert ``table`` into an instance of the dataclass ``cls``."""
        if not isinstance(table, dict):
            hint = ""
            if isinstance(table, list) and table and all(isinstance(t, dict) for t in table):
                hint = f"; write [{path}] (one table), not [[{path}]]"
            raise self.error(path, f"expected a table, got {describe(table)} ({_shown(table)}){hint}")
        fields = {toml_key(f): f for f in public_fields(cls)}
        hints = _hints(cls)
        for name in table:
            alias = _ALIASES.get((cls.__name__, name))
            if name not in fields and alias is None:
                hint = (
                    _misplaced(cls, name)
                    or suggestion(name, fields)
                    or f" (allowed: {', '.join(sorted(fields))})"
                )
                raise self.error(join(path, name), f"unknown key{hint}")
        values: dict[str, Any] = {}
        for name, f in fields.items():
            sub = join(path, name)
            raw = table.get(name)
            aliased = [a for (c, a), target in _ALIASES.items() if c == cls.__name__ and target == name]
            for alias_key in aliased:
                if alias_key in table:
                    if name in table:
                        raise self.error(sub, f'give either "{name}" or its alias "{alias_key}", not both')
                    raw = table[alias_key]
                    sub = join(path, alias_key)
            if raw is None:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise self.error(sub, "is required")
                continue
            values[f.name] = self.value(hints[f.name], raw, sub, f)
        return cls(**values)

    def value(self, hint: Any, raw: object, path: str, f: dataclasses.Field[Any] | None = None) -> Any:
        """Convert one value to the annotated type ``hint``."""
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.value(options[0], raw, path, f)
            for option in options:
                if self._matches(option, raw):
                    return raw
            expected = " or ".join(self._type_name(o) for o in options)
            raise self.error(path, f"expected {expected}, got {describe(raw)} ({_shown(raw)})")
        if origin is tuple:
            if not isinstance(raw, list):
                hint = ""
                if isinstance(raw, dict) and dataclasses.is_dataclass(args[0]):
                    hint = f"; write [[{path}]] (an array of tables), not [{path}]"
                raise self.error(path, f"expected an array, got {describe(raw)} ({_shown(raw)}){hint}")
            return tuple(self.value(args[0], item, f"{path}[{i}]", f) for i, item in enumerate(raw))
        if hint is Path:
            text = self.value(str, raw, path)
            if not text:
                raise self.error(path, "must not be empty")
            return (self.ctx.base_dir / text).resolve()
        if origin is Mapping or hint is Mapping or origin is dict:
            if not isinstance(raw, dict):
                raise self.error(path, f"expected a table, got {describe(raw)} ({_shown(raw)})")
            return types.MappingProxyType(dict(raw))
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self.model(hint, raw, path)
        if hint is int and f is not None and f.name in _SIZE_FIELDS:
            return self.size(raw, path)
        if not self._matches(hint, raw):
            raise self.error(path, f"expected {self._type_name(hint)}, got {describe(raw)} ({_shown(raw)})")
        return raw

    def size(self, raw: object, path: str) -> int:
        """A size in bytes from an integer or a string such as ``"10 GiB"`` (osbuild's datasizes)."""
        if isinstance(raw, int) and not isinstance(raw, bool):
            if raw < 0:
                raise self.error(path, "must not be negative")
            return raw
        if isinstance(raw, str):
            m = _SIZE_RE.match(raw)
            unit = m.group(2).lower() if m else ""
            if m and (unit in _SIZE_UNITS or unit == ""):
                return int(m.group(1)) * _SIZE_UNITS.get(unit, 1)
            hint = 'use bytes or a number with a unit ("10 GiB", "512 MiB")'
            raise self.error(path, f"invalid size {_shown(raw)}: {hint}")
        raise self.error(path, f"expected an integer or a size string, got {describe(raw)} ({_shown(raw)})")

    @staticmethod
    def _matches(hint: Any, raw: object) -> bool:
        if hint is bool:
            return isinstance(raw, bool)
        if hint is int:
            return isinstance(raw, int) and not isinstance(raw, bool)
        if hint is str:
            return isinstance(raw, str)
        if hint is float:
            return isinstance(raw, (int, float)) and not isinstance(raw, bool)
        return False

    @staticmethod
    def _type_name(hint: Any) -> str:
        names = {bool: "a boolean", int: "an integer", str: "a string", float: "a number", Path: "a path string"}
        if hint in names:
            return names[hint]
        if dataclasses.is_dataclass(hint):
            return "a table"
        return str(hint)
