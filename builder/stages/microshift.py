"""MicroShift settings: ``config.yaml`` checked against MicroShift's known keys, pull secret, manifests.

Known top-level keys and the CIDR fields follow MicroShift's ``packaging/microshift/config.yaml`` and
``docs/user/howto_config.md`` (openshift/microshift). ``[fieldshift.microshift] config`` is written to
``/etc/microshift/config.d/50-fieldshift.yaml``; a ``config.yaml`` or ``config.d/*.yaml`` placed by
``[[customizations.files]]`` is checked the same way. The pull secret ``/etc/crio/openshift-pull-secret``
is forced to root 0600; manifests directories go to ``/etc/microshift/manifests.d/<name>``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from builder.stages import StageError

KNOWN_KEYS = (
    "apiServer", "debugging", "dns", "etcd", "genericDevicePlugin", "ingress", "kubelet", "manifests",
    "network", "node", "storage", "telemetry",
)
PULL_SECRET = "etc/crio/openshift-pull-secret"
DROPIN = "etc/microshift/config.d/50-fieldshift.yaml"


@dataclass(frozen=True)
class MicroshiftOptions:
    """The ``[fieldshift.microshift]`` table (``config`` is MicroShift's own schema)."""

    config: Mapping[str, Any] = field(default_factory=dict)
    manifests: tuple[Path, ...] = ()


def _cidr(value: Any, where: str) -> None:
    text = value.get("cidr") if isinstance(value, dict) else value  # pre-4.14 form: - cidr: 10.42.0.0/16
    try:
        ipaddress.ip_network(str(text), strict=True)
    except ValueError as err:
        raise StageError(f'{where}: "{text}" is not a valid CIDR ({err})') from None


def validate(config: Any, where: str) -> None:
    """Raise :class:`StageError` on an unknown top-level key or a bad network CIDR."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise StageError(f"{where}: must be a mapping of MicroShift settings")
    for key in config:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f" (known: {', '.join(KNOWN_KEYS)})"
            raise StageError(f'{where}.{key}: unknown MicroShift setting{hint}')
    network = config.get("network") or {}
    if not isinstance(network, dict):
        raise StageError(f"{where}.network: must be a mapping")
    for name in ("clusterNetwork", "serviceNetwork"):
        values = network.get(name) or []
        if isinstance(values, str):
            values = [values]
        for i, v in enumerate(values):
            _cidr(v, f"{where}.network.{name}[{i}]")
    node_ip = (config.get("node") or {}).get("nodeIP") if isinstance(config.get("node"), dict) else None
    if node_ip:
        try:
            ipaddress.ip_address(str(node_ip))
        except ValueError:
            raise StageError(f'{where}.node.nodeIP: "{node_ip}" is not an IP address') from None


def _check_file(root: Path, path: Path) -> None:
    rel = "/" + str(path.relative_to(root))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise StageError(f"{rel}: not valid YAML ({str(err).splitlines()[0]})") from None
    validate(data, rel)


def apply(root: Path, options: MicroshiftOptions) -> None:
    """Write and check the MicroShift configuration."""
    etc = root / "etc/microshift"
    if options.config:
        validate(dict(options.config), "fieldshift.microshift.config")
        dest = root / DROPIN
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(yaml.safe_dump(dict(options.config), sort_keys=True))
        os.chmod(dest, 0o644)
    for path in [etc / "config.yaml", *sorted((etc / "config.d").glob("*.yaml"))]:
        if path.is_file():
            _check_file(root, path)
    secret = root / PULL_SECRET
    if secret.is_file():
        os.chmod(secret, 0o600)
        os.lchown(secret, 0, 0)
    for i, src in enumerate(options.manifests):
        if not (src / "kustomization.yaml").exists() and not (src / "kustomization.yml").exists():
            raise StageError(f"fieldshift.microshift.manifests[{i}]: {src} has no kustomization.yaml")
        dest_dir = etc / "manifests.d" / src.name
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        shutil.copytree(src, dest_dir, symlinks=False)
