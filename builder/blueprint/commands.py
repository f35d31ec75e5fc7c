"""``fieldshift blueprint …`` commands."""

from __future__ import annotations

import click


@click.group()
def blueprint() -> None:
    """Validate, show, depsolve and freeze osbuild blueprints."""
