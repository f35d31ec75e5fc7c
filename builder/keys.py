"""Catalog signing keys: generate an Ed25519 key pair (``fieldshift keys generate``).

``DIR/catalog.key`` is the private key (PEM PKCS8, unencrypted, mode 0600; keep it on the build
host or in the CI secret store), ``DIR/catalog.pub`` the public key (PEM SubjectPublicKeyInfo) to
list in a blueprint's ``[fieldshift] trusted_keys``. Devices may trust several public keys at once,
which is how keys are rotated (see docs/releases.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from greenboot import atomic
from greenboot.errors import UserError
from updater import catalog

PRIVATE_NAME = "catalog.key"
PUBLIC_NAME = "catalog.pub"


class KeyGenerationError(UserError):
    """The key pair cannot be written where asked."""


@dataclass(frozen=True)
class KeyPair:
    """Where a generated key pair was written, and the public key's fingerprint."""

    private_key: Path
    public_key: Path
    key_id: str


def generate(out_dir: Path, *, force: bool = False) -> KeyPair:
    """Write a new Ed25519 key pair into ``out_dir``; refuse to overwrite one unless ``force``."""
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    if not force:
        for path in (private_path, public_path):
            if path.exists():
                raise KeyGenerationError(
                    f"{path} already exists; move it away or pass --force to replace the key pair"
                )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KeyGenerationError(f"cannot create key directory {out_dir}: {err.strerror}") from err
    if not os.access(out_dir, os.W_OK):
        raise KeyGenerationError(f"key directory {out_dir} is not writable")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic.write_bytes(private_path, private_pem, mode=0o600)
    atomic.write_bytes(public_path, catalog.public_key_pem(key.public_key()), mode=0o644)
    return KeyPair(private_key=private_path, public_key=public_path, key_id=catalog.key_id(key.public_key()))


@click.group("keys")
def keys() -> None:
    """Manage release catalog signing keys."""


@keys.command("generate")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write catalog.key (0600) and catalog.pub into.")
@click.option("--force", is_flag=True, help="Replace an existing key pair in DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def generate_command(out_dir: Path, force: bool, as_json: bool) -> None:
    """Generate an Ed25519 key pair for signing release catalogs."""
    pair = generate(out_dir, force=force)
    if as_json:
        click.echo(json.dumps({"private_key": str(pair.private_key), "public_key": str(pair.public_key),
                               "key_id": pair.key_id}))
    else:
        click.echo(f"wrote {pair.private_key} (private, 0600) and {pair.public_key} (key id {pair.key_id})")
