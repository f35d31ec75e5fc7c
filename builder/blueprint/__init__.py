"""Blueprints: the osbuild / image-builder TOML format, parsed into typed, validated models.

``load(path, vars=None, image_type=None)`` is the single entry point; it returns a frozen
:class:`Blueprint` or raises :class:`BlueprintError` naming the file and key path.
"""

from builder.blueprint.errors import BlueprintError
from builder.blueprint.loader import load
from builder.blueprint.models import (
    Blueprint,
    Container,
    Customizations,
    Directory,
    FieldshiftSettings,
    File,
    Firewall,
    GreenbootSettings,
    Group,
    Kernel,
    MicroshiftSettings,
    Package,
    Repository,
    Services,
    User,
)
from builder.blueprint.shacrypt import hash_password

__all__ = [
    "Blueprint",
    "BlueprintError",
    "Container",
    "Customizations",
    "Directory",
    "FieldshiftSettings",
    "File",
    "Firewall",
    "GreenbootSettings",
    "Group",
    "Kernel",
    "MicroshiftSettings",
    "Package",
    "Repository",
    "Services",
    "User",
    "hash_password",
    "load",
]
