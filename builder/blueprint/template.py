"""Render ``NAME.toml.j2`` blueprint templates with Jinja2, refusing undefined variables.

Variables come from ``--var KEY=VALUE`` (strings) and ``--vars FILE.yaml`` (a YAML mapping);
``--var`` wins over the file. An undefined variable is an error that names the variable and the
template file and line, never an empty string in the output. The ``toml`` filter quotes a value for
TOML (``secret = {{ pull_secret | toml }}``) so quotes or newlines in it cannot break the document.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

from builder.blueprint.errors import BlueprintError
from builder.blueprint.normalize import toml_value

TEMPLATE_SUFFIX = ".j2"
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_template(path: Path) -> bool:
    """True for files rendered with Jinja2 before parsing (``*.j2``)."""
    return path.name.endswith(TEMPLATE_SUFFIX)


def parse_var(text: str) -> tuple[str, str]:
    """Split a ``KEY=VALUE`` command-line assignment."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not _VAR_NAME.match(name):
        raise BlueprintError(f'--var "{text}": expected KEY=VALUE, KEY made of letters, digits and _')
    return name, value


def read_vars_file(path: Path) -> dict[str, Any]:
    """The variables of a ``--vars`` YAML file (a mapping with string keys)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise BlueprintError(f"{path}: cannot read variables file: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BlueprintError(f"{where}: YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BlueprintError(f"{path}: expected a mapping of variable names to values, got {type(data).__name__}")
    for name in data:
        if not isinstance(name, str) or not _VAR_NAME.match(name):
            raise BlueprintError(f'{path}: "{name}" is not a valid variable name')
    return data


def render(path: Path, variables: Mapping[str, Any]) -> str:
    """Render the template at ``path`` with ``variables``; undefined variables are errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path.parent)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # {{ value | toml }}: a correctly quoted TOML value, whatever characters the value holds.
    env.filters["toml"] = toml_value
    try:
        template = env.get_template(path.name)
        return template.render(**variables)
    except jinja2.TemplateSyntaxError as err:
        where = err.filename or str(path)
        raise BlueprintError(f"{where}:{err.lineno}: template syntax error: {err.message}") from None
    except jinja2.UndefinedError as err:
        raise BlueprintError(f"{_template_location(err, path)}: {_undefined_message(err)}") from None
    except jinja2.TemplateError as err:
        raise BlueprintError(f"{_template_location(err, path)}: template error: {err}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as err:
        # Errors raised by filters or expressions on the given values ({{ 1 / zero }}, "x" + 1 …).
        raise BlueprintError(f"{_template_location(err, path)}: template error: {err}") from None


def _undefined_message(err: jinja2.UndefinedError) -> str:
    match = re.match(r"^'([^']+)' is undefined$", str(err.message or ""))
    if match:
        name = match.group(1)
        return f'template variable "{name}" is undefined; pass it with --var {name}=VALUE or in a --vars file'
    return f"template error: {err.message}"


def _template_location(err: BaseException, path: Path) -> str:
    """``file:line`` of the innermost template frame in ``err``'s traceback (Jinja maps these)."""
    where = str(path)
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename.endswith(TEMPLATE_SUFFIX) or frame.filename == str(path):
            where = f"{frame.filename}:{frame.lineno}"
    return where
