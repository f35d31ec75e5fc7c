"""Package repositories from ``[[customizations.repositories]]`` as dnf ``.repo`` files.

Written to ``/etc/yum.repos.d/<filename>`` in the image (osbuild's ``org.osbuild.yum.repos``); the
same text is used at build time for the repositories marked ``install_from``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from builder.blueprint.models import Repository
from builder.stages import StageError


@dataclass(frozen=True)
class RepositoriesOptions:
    """The blueprint's repositories, in blueprint order."""

    repositories: tuple[Repository, ...] = ()


def _flag(value: bool | None) -> str:
    return "1" if value else "0"


def repo_text(repo: Repository) -> str:
    """The ``[id]`` stanza of one repository."""
    lines = [f"[{repo.id}]", f"name={repo.name or repo.id}"]
    if repo.baseurls:
        lines.append("baseurl=" + "\n        ".join(repo.baseurls))
    if repo.metalink:
        lines.append(f"metalink={repo.metalink}")
    if repo.mirrorlist:
        lines.append(f"mirrorlist={repo.mirrorlist}")
    lines.append(f"enabled={_flag(repo.enabled if repo.enabled is not None else True)}")
    if repo.gpgcheck is not None:
        lines.append(f"gpgcheck={_flag(repo.gpgcheck)}")
    if repo.repo_gpgcheck is not None:
        lines.append(f"repo_gpgcheck={_flag(repo.repo_gpgcheck)}")
    if repo.sslverify is not None:
        lines.append(f"sslverify={_flag(repo.sslverify)}")
    if repo.priority is not None:
        lines.append(f"priority={repo.priority}")
    if repo.module_hotfixes is not None:
        lines.append(f"module_hotfixes={_flag(repo.module_hotfixes)}")
    keys = [k for k in repo.gpgkeys if "://" in k]
    if keys:
        lines.append("gpgkey=" + "\n       ".join(keys))
    return "\n".join(lines) + "\n"


def filename(repo: Repository) -> str:
    name = repo.filename or f"{repo.id}.repo"
    if "/" in name or not name.endswith(".repo"):
        raise StageError(f'customizations.repositories: filename "{name}" must be a plain name ending in ".repo"')
    return name


def apply(root: Path, options: RepositoriesOptions) -> None:
    """Write each repository into ``/etc/yum.repos.d`` (several ids may share one file)."""
    files: dict[str, list[str]] = {}
    for repo in options.repositories:
        files.setdefault(filename(repo), []).append(repo_text(repo))
    for name, stanzas in sorted(files.items()):
        dest = root / "etc/yum.repos.d" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("\n".join(stanzas))
        os.chmod(dest, 0o644)
