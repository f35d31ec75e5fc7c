"""``fieldshift blueprint …`` commands: validate and show blueprints (depsolve/freeze join later)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from builder.blueprint import imagetypes
from builder.blueprint.errors import BlueprintError
from builder.blueprint.loader import load
from builder.blueprint.normalize import to_json_data, to_toml
from builder.blueprint.template import parse_var, read_vars_file


def template_options(fn: Any) -> Any:
    """The options every command that loads a blueprint shares (``--var``, ``--vars``, ``--image-type``)."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)
    fn = click.option(
        "--image-type",
        "image_type",
        default=imagetypes.DEFAULT,
        show_default=True,
        help=f"Image type to validate for ({', '.join(imagetypes.names())}).",
    )(fn)
    fn = click.option(
        "--vars", "vars_file", type=click.Path(dir_okay=False, path_type=Path), help="YAML file of template variables."
    )(fn)
    fn = click.option("--var", "var_items", multiple=True, metavar="KEY=VALUE", help="Template variable (repeatable).")(
        fn
    )
    fn = click.argument("file", type=click.Path(path_type=Path))(fn)
    return fn


def collect_vars(var_items: tuple[str, ...], vars_file: Path | None) -> dict[str, Any]:
    """Template variables from ``--vars FILE`` overlaid with ``--var K=V`` (the command line wins)."""
    values: dict[str, Any] = read_vars_file(vars_file) if vars_file is not None else {}
    for item in var_items:
        name, value = parse_var(item)
        values[name] = value
    return values


@click.group()
def blueprint() -> None:
    """Validate, show, depsolve and freeze osbuild blueprints."""


@blueprint.command()
@template_options
def validate(file: Path, var_items: tuple[str, ...], vars_file: Path | None, image_type: str, as_json: bool) -> None:
    """Check FILE (a blueprint .toml or .toml.j2 template) and report the first problem."""
    try:
        bp = load(file, collect_vars(var_items, vars_file), image_type)
    except BlueprintError as err:
        if as_json:  # machines get the verdict on stdout too; people still get the line on stderr
            click.echo(json.dumps({"valid": False, "file": str(file), "error": err.message}, indent=2))
        raise
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": True,
                    "file": str(file),
                    "name": bp.name,
                    "version": bp.version,
                    "distro": bp.distro,
                    "image_type": bp.image_type,
                    "source_digest": bp.source_digest,
                },
                indent=2,
            )
        )
    else:
        click.echo(f"{file}: valid {bp.image_type} blueprint {bp.name} {bp.version} for {bp.distro}")


@blueprint.command()
@template_options
def show(file: Path, var_items: tuple[str, ...], vars_file: Path | None, image_type: str, as_json: bool) -> None:
    """Print FILE as the normalized blueprint (defaults filled in, passwords hashed)."""
    bp = load(file, collect_vars(var_items, vars_file), image_type)
    if as_json:
        click.echo(json.dumps(to_json_data(bp), indent=2, sort_keys=False))
    else:
        click.echo(to_toml(bp), nl=False)
