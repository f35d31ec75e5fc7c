"""Semantic rules of a blueprint beyond keys and types (filled in below)."""

from __future__ import annotations

from builder.blueprint.models import Blueprint
from builder.blueprint.parse import Converter


def check(blueprint: Blueprint, conv: Converter) -> None:
    """Raise :class:`BlueprintError` for the first rule ``blueprint`` breaks."""
