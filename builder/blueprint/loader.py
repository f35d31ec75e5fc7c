"""Load a blueprint file: render the template, parse TOML, convert to models, validate, hash passwords.

:func:`load` is the single entry point every other part of fieldshift uses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

from builder import distro
from builder.blueprint import imagetypes, rules, shacrypt, template
from builder.blueprint.errors import BlueprintError
from builder.blueprint.models import Blueprint, User
from builder.blueprint.parse import Context, Converter

REPRODUCIBLE_ENV = "SOURCE_DATE_EPOCH"
# osbuild builds for the host distro when a blueprint names none; a build host here is not one.
DEFAULT_DISTRO = "rhel-9"
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_TOML_END = re.compile(r"\s*\(at end of document\)$")


def render_source(path: Path, variables: Mapping[str, Any] | None = None) -> str:
    """The TOML text of a blueprint file: rendered when it is a ``.j2`` template, else read as is."""
    if path.is_dir():
        raise BlueprintError(f"{path}: is a directory, expected a blueprint file")
    if template.is_template(path):
        if not path.is_file():
            raise BlueprintError(f"{path}: no such file")
        return template.render(path, variables or {})
    if variables:
        names = ", ".join(sorted(variables))
        raise BlueprintError(f"{path}: template variables given ({names}) but the file is not a .j2 template")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlueprintError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise BlueprintError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise BlueprintError(f"{path}: cannot read: {err.strerror or err}") from None


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error names ``source:line:column``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        m = _TOML_POSITION.search(message)
        if m:
            where = f"{source}:{m.group(1)}:{m.group(2)}"
            message = message[: m.start()]
        elif _TOML_END.search(message):
            lines = text.splitlines() or [""]
            where = f"{source}:{len(lines)}:{len(lines[-1]) + 1}"
            message = _TOML_END.sub("", message)
        else:
            where = source
        raise BlueprintError(f"{where}: TOML syntax error: {message}") from None


def load(
    path: str | os.PathLike[str],
    vars: Mapping[str, Any] | None = None,  # noqa: A002 - name fixed by the interface contract
    image_type: str | None = None,
    *,
    reproducible: bool | None = None,
) -> Blueprint:
    """Render, parse and validate the blueprint at ``path`` for ``image_type`` (default edge-commit).

    Plain-text user passwords are replaced by SHA-512 crypt hashes: with a random salt, or, when
    ``reproducible`` is true (default: ``SOURCE_DATE_EPOCH`` is set), a salt derived from the
    rendered blueprint's digest and the user name so that identical inputs give identical output.
    Raises :class:`BlueprintError` (one line, naming the file and key path) on any problem.
    """
    file = Path(path)
    kind = imagetypes.get(image_type or imagetypes.DEFAULT)
    text = render_source(file, vars)
    source = f"{file} (rendered)" if template.is_template(file) else str(file)
    document = parse_toml(text, source)
    return from_document(document, file, text=text, image_type=kind.name, reproducible=reproducible)


def from_document(
    document: Mapping[str, Any],
    file: Path,
    *,
    text: str = "",
    image_type: str | None = None,
    reproducible: bool | None = None,
) -> Blueprint:
    """Validate an already parsed TOML ``document`` that came from ``file`` (see :func:`load`).

    ``text`` is the rendered TOML the digest is computed from; relative paths in the document
    (trusted keys, file URIs, manifests) are anchored at ``file``'s directory.
    """
    kind = imagetypes.get(image_type or imagetypes.DEFAULT)
    converter = Converter(Context(source=str(file), base_dir=file.resolve().parent))
    table = document.get("customizations")
    present = frozenset(table) if isinstance(table, dict) else frozenset()
    blueprint = converter.model(Blueprint, dict(document), "")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    blueprint = dataclasses.replace(
        blueprint,
        customizations=dataclasses.replace(blueprint.customizations, present=present),
        distro=rules.canonical_distro(blueprint.distro) if blueprint.distro else DEFAULT_DISTRO,
        image_type=kind.name,
        source_digest=digest,
        source_path=file,
    )
    # A section the image type does not take is reported before any rule about its contents.
    imagetypes.check(kind, blueprint, converter)
    rules.check(blueprint, converter)
    blueprint = _distro_kernel(blueprint, document)
    if reproducible is None:
        reproducible = bool(os.environ.get(REPRODUCIBLE_ENV))
    return _hash_passwords(blueprint, reproducible)


def _distro_kernel(blueprint: Blueprint, document: Mapping[str, Any]) -> Blueprint:
    """``[customizations.kernel]`` without ``name`` means the distro's kernel (osbuild assumes ``kernel``,
    which does not exist on Debian)."""
    kernel = blueprint.customizations.kernel
    table = document.get("customizations", {}).get("kernel", {})
    if kernel is None or "name" in table:
        return blueprint
    name = distro.get(blueprint.distro, blueprint.architecture).kernel_package
    customizations = dataclasses.replace(blueprint.customizations, kernel=dataclasses.replace(kernel, name=name))
    return dataclasses.replace(blueprint, customizations=customizations)


def _hash_passwords(blueprint: Blueprint, reproducible: bool) -> Blueprint:
    """Replace plain passwords with ``$6$`` hashes, drop empty ones (osbuild's CryptPasswords), trim homes."""
    users: list[User] = []
    for user in blueprint.customizations.user:
        password = user.password
        if password == "":
            password = None
        elif password is not None and not shacrypt.is_crypted(password):
            salt = None
            if reproducible:
                salt = shacrypt.salt_from(f"{blueprint.source_digest}\0{user.name}".encode())
            password = shacrypt.hash_password(password, salt)
        home = user.home.rstrip("/") or "/" if user.home is not None else None  # as osbuild's GetUsers
        users.append(dataclasses.replace(user, password=password, home=home))
    customizations = dataclasses.replace(blueprint.customizations, user=tuple(users))
    return dataclasses.replace(blueprint, customizations=customizations)
