"""``fieldshift build``, ``fieldshift diff`` and ``fieldshift blueprint depsolve|freeze``.

Thin click layers over :mod:`builder.compose` and :mod:`builder.diff`; registered by
``builder.cli._register()``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import toml
import tomllib

from builder import compose
from builder.blueprint.commands import collect_vars, template_options
from builder.blueprint.loader import load, render_source
from builder.diff import diff as diff_commits

_repos_option = click.option(
    "--repos", "repos", multiple=True, required=True, type=click.Path(path_type=Path),
    help="dnf .repo file or directory of them (repeatable); the blueprint's install_from repositories are added.",
)
_cache_option = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                             help="Metadata, package and tree cache (default ~/.cache/fieldshift/compose).")


@click.command()
@template_options
@_repos_option
@click.option("--ostree-repo", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Archive ostree repository to commit into (created if missing).")
@click.option("--ref", help="Ref to commit on (default: [fieldshift] ref, else the distro's ref).")
@click.option("--parent", help="Parent ref or commit (default: the ref's current commit).")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Write commit.tar and kickstart.ks here.")
@click.option("--keep-tree", is_flag=True, help="Keep the prepared tree for debugging (path is reported).")
@click.option("--source-date-epoch", type=int, help="Commit timestamp (default: $SOURCE_DATE_EPOCH, else now).")
@_cache_option
def build(file: Path, var_items: tuple[str, ...], vars_file: Path | None, image_type: str, as_json: bool,
          repos: tuple[Path, ...], ostree_repo: Path, ref: str | None, parent: str | None, output: Path | None,
          keep_tree: bool, source_date_epoch: int | None, cache_dir: Path | None) -> None:
    """Build BLUEPRINT into an rpm-ostree compatible commit."""
    request = compose.BuildRequest(
        blueprint=file, repos=repos, ostree_repo=ostree_repo, ref=ref, parent=parent,
        variables=collect_vars(var_items, vars_file), output=output, keep_tree=keep_tree, cache_dir=cache_dir,
        source_date_epoch=source_date_epoch, image_type=image_type,
    )
    result = compose.build(request, compose.terminal_progress())
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return
    state = "unchanged, no new commit" if result.reused else "new commit"
    click.echo(f"ref:     {result.ref}")
    click.echo(f"commit:  {result.commit}  ({state})")
    click.echo(f"version: {result.version}   kernel: {result.kernel or '?'}   packages: {len(result.packages)}")
    if result.parent:
        click.echo(f"parent:  {result.parent}")
    for path in result.outputs:
        click.echo(f"output:  {path}")
    if result.kept_tree:
        click.echo(f"tree:    {result.kept_tree}")


@click.command()
@click.option("--ostree-repo", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.argument("from_rev")
@click.argument("to_rev")
def diff(ostree_repo: Path, as_json: bool, from_rev: str, to_rev: str) -> None:
    """Packages added, removed, upgraded and downgraded between two commits (like rpm-ostree db diff)."""
    result = diff_commits(ostree_repo, from_rev, to_rev)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        click.echo("\n".join(result.lines()))


@click.command()
@template_options
@_repos_option
@_cache_option
def depsolve(file: Path, var_items: tuple[str, ...], vars_file: Path | None, image_type: str, as_json: bool,
             repos: tuple[Path, ...], cache_dir: Path | None) -> None:
    """Resolve every package the image would contain (distro base set included)."""
    bp = load(file, collect_vars(var_items, vars_file), image_type)
    _d, pkgset = compose.resolve(bp, repos, cache_dir or compose.default_cache_dir())
    if as_json:
        click.echo(json.dumps({"digest": pkgset.digest, "packages": [
            {"name": p.name, "epoch": p.epoch, "version": p.version, "release": p.release, "arch": p.arch,
             "repo": p.repo_id, "checksum": p.checksum} for p in pkgset.packages]}, indent=2))
    else:
        for p in pkgset.packages:
            click.echo(p.nevra)


@click.command()
@template_options
@_repos_option
@_cache_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
def freeze(file: Path, var_items: tuple[str, ...], vars_file: Path | None, image_type: str, as_json: bool,
           repos: tuple[Path, ...], cache_dir: Path | None, output: Path | None) -> None:
    """Print the rendered blueprint with every package pinned to its exact resolved version."""
    variables = collect_vars(var_items, vars_file)
    bp = load(file, variables, image_type)
    _d, pkgset = compose.resolve(bp, repos, cache_dir or compose.default_cache_dir())
    document = tomllib.loads(render_source(file, variables))
    frozen = []
    import fnmatch

    for entry in document.get("packages", []):
        matches = [p for p in pkgset.packages if fnmatch.fnmatchcase(p.name, entry.get("name", ""))]
        if not matches:
            frozen.append(entry)
        for p in matches:
            frozen.append({**entry, "name": p.name, "version": f"{p.evr}.{p.arch}"})
    document["packages"] = frozen
    text = json.dumps(document, indent=2) + "\n" if as_json else toml.dumps(document)
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


def register(cli: click.Group, blueprint_group: click.Group) -> None:
    """Attach the commands to the top-level group and the ``blueprint`` group."""
    cli.add_command(build)
    cli.add_command(diff)
    blueprint_group.add_command(depsolve)
    blueprint_group.add_command(freeze)
