"""Property: whatever a TOML document holds, validation accepts it or raises BlueprintError, nothing else."""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.blueprint import Blueprint, BlueprintError, imagetypes, load
from builder.blueprint.loader import from_document, parse_toml
from builder.blueprint.models import public_fields, toml_key
from builder.blueprint.normalize import dumps

HERE = Path(__file__).resolve().parent / "data" / "property.toml"

# Every TOML value type tomllib can produce, nested.
scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.datetimes()
    | st.dates()
    | st.times()
)
keys = st.text(max_size=12) | st.sampled_from(["name", "user", "path", "ports", "mode", "data", "channel", "agent"])
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3), max_leaves=8
)

BASE: dict[str, Any] = {
    "name": "prop",
    "version": "1.0.0",
    "packages": [{"name": "a", "version": "1.*"}],
    "modules": [{"name": "b"}],
    "groups": [{"name": "core"}],
    "enabled_modules": [{"name": "nodejs", "stream": "18"}],
    "containers": [{"source": "registry.example.com/a/b:1", "tls-verify": False}],
    "customizations": {
        "hostname": "h",
        "kernel": {"name": "kernel", "append": "quiet"},
        "sshkey": [{"user": "root", "key": "ssh-ed25519 A"}],
        "user": [{"name": "u", "groups": ["wheel"], "uid": 1000, "home": "/var/home/u"}],
        "group": [{"name": "g", "gid": 1001}],
        "timezone": {"timezone": "UTC", "ntpservers": ["pool.ntp.org"]},
        "locale": {"languages": ["C.UTF-8"], "keyboard": "us"},
        "firewall": {"ports": ["22:tcp"], "services": {"enabled": ["ssh"]}, "zones": [{"name": "trusted",
                                                                                      "sources": ["10.0.0.0/8"]}]},
        "services": {"enabled": ["sshd"], "disabled": ["a"], "masked": ["b"]},
        "filesystem": [{"mountpoint": "/var/data", "minsize": "1 GiB"}],
        "directories": [{"path": "/etc/d", "mode": "0755", "user": "root", "group": 0, "ensure_parents": True}],
        "files": [{"path": "/etc/d/f", "data": "x", "mode": "0644"}],
        "repositories": [{"id": "r", "baseurls": ["http://127.0.0.1/r"], "gpgcheck": False}],
        "ignition": {"firstboot": {"url": "http://127.0.0.1/ign"}},
        "fips": False,
    },
    "fieldshift": {
        "channel": "stable",
        "release_url": "http://127.0.0.1:8080/r",
        "agent": {"reboot_strategy": "immediate"},
        "greenboot": {"max_boot_attempts": 3},
        "microshift": {"config": {"dns": {"baseDomain": "x"}}},
    },
}


def _schema_paths(cls: type, prefix: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Every key path the models define, with index 0 for arrays (so every key gets arbitrary values)."""
    paths: list[tuple[Any, ...]] = []
    hints = typing.get_type_hints(cls)
    for f in public_fields(cls):
        path = prefix + (toml_key(f),)
        paths.append(path)
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
        inner = args[0] if typing.get_origin(hint) is tuple else (args[0] if len(args) == 1 else hint)
        if dataclasses.is_dataclass(inner) and isinstance(inner, type):
            sub = path + (0,) if typing.get_origin(hint) is tuple else path
            paths += _schema_paths(inner, sub)
    return paths


PATHS = _schema_paths(Blueprint, ())


def _set(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = document
    for step in path[:-1]:
        if isinstance(step, int):
            if not isinstance(node, list) or not node:
                return
            node = node[0]
        else:
            if not isinstance(node, dict):
                return
            node = node.setdefault(step, [{}] if isinstance(path[path.index(step) + 1], int) else {})
    if isinstance(node, dict):
        node[path[-1]] = value


def _check(document: dict[str, Any], image_type: str) -> None:
    try:
        bp = from_document(document, HERE, text="", image_type=image_type, reproducible=True)
    except BlueprintError as err:
        assert err.message and "\n" not in err.message
        return
    assert isinstance(bp, Blueprint)


def test_base_document_is_valid() -> None:
    assert from_document(copy.deepcopy(BASE), HERE, image_type="raw").name == "prop"
    assert len(PATHS) > 150


@pytest.mark.parametrize("path", PATHS, ids=[".".join(map(str, p)) for p in PATHS])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, image_type=st.sampled_from(imagetypes.names()))
def test_any_value_at_every_key_is_accepted_or_a_blueprint_error(path: tuple[Any, ...], value: Any,
                                                                 image_type: str) -> None:  # fmt: skip
    document = copy.deepcopy(BASE)
    _set(document, path, value)
    _check(document, image_type)


def test_toml_writer_round_trips_the_base_document() -> None:
    assert parse_toml(dumps(BASE), "base.toml") == BASE


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(keys, values, max_size=6), image_type=st.sampled_from(imagetypes.names()))
def test_arbitrary_documents_are_accepted_or_a_blueprint_error(document: dict[str, Any], image_type: str) -> None:
    _check(document, image_type)


@settings(max_examples=200, deadline=None)
@given(document=st.dictionaries(keys, values, max_size=6))
def test_arbitrary_toml_text_parses_or_is_a_blueprint_error(document: dict[str, Any]) -> None:
    text = dumps(document)
    try:
        parsed = parse_toml(text, "prop.toml")
    except BlueprintError:
        return
    _check(parsed, "edge-commit")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_is_accepted_or_a_blueprint_error(text: str) -> None:
    try:
        parsed = parse_toml(text, "prop.toml")
    except BlueprintError as err:
        assert "\n" not in err.message
        return
    _check(parsed, "edge-commit")


EXAMPLE = Path(__file__).resolve().parents[2] / "blueprints" / "microshift-edge.toml.j2"
VARIABLES = ["channel", "microshift_version", "base_domain", "pull_secret", "release_url"]


@settings(max_examples=60, deadline=None)
@given(variables=st.dictionaries(st.sampled_from(VARIABLES), st.text(max_size=30), min_size=1))
def test_the_example_template_with_any_variable_values_loads_or_is_one_error(variables: dict[str, str]) -> None:
    try:
        bp = load(EXAMPLE, variables, reproducible=True)
    except BlueprintError as err:
        assert "\n" not in err.message
        return
    if "pull_secret" in variables:
        assert bp.customizations.files[1].data == variables["pull_secret"]
