"""Shared, session-scoped compose builds: one cold build of the example and one of a full blueprint."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder import compose
from tests.fixtures import rpmrepo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "blueprints" / "microshift-edge.toml.j2"
EPOCH = 1700000000
ALICE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFieldshiftTestKeyForAlice alice@test"

FULL_BLUEPRINT = """
name = "full"
version = "2.0.0"
distro = "rhel-9"

[[packages]]
name = "microshift"
version = "4.14.*"
[[packages]]
name = "hello"
version = "{hello}"
[[packages]]
name = "chrony"

[[containers]]
source = "oci:oci-image:latest"
name = "localhost/hello:1.0"

[customizations]
hostname = "edge-01.example.com"

[[customizations.group]]
name = "operators"
gid = 1500

[[customizations.user]]
name = "{first_user}"
description = "first user"
password = "$6$saltsalt$Zp4xV3fPpGv2d6xFVd7xLcq7sWkb2B6uMj6vJk0Y9oNQ3H1JpD1ZXz0Gg0ZbC7r3YBq1Y8kq9bWmZ8L0xJq8./"
key = "{alice_key}"
groups = ["wheel", "operators"]

[[customizations.user]]
name = "{second_user}"

[customizations.timezone]
timezone = "Europe/Berlin"
ntpservers = ["ntp1.example.com", "ntp2.example.com"]

[customizations.locale]
languages = ["de_DE.UTF-8"]
keyboard = "de"

[customizations.services]
enabled = ["microshift", "chronyd", "sshd"]
disabled = ["debug-shell"]

[[customizations.directories]]
path = "/etc/edge/app"
user = "alice"
group = "operators"
mode = "0750"
ensure_parents = true

[[customizations.files]]
path = "/etc/edge/app/settings.conf"
user = "alice"
group = "operators"
mode = "0640"
data = "{setting}"

[[customizations.repositories]]
id = "edge-extras"
name = "Edge extras"
baseurls = ["http://127.0.0.1:9/extras"]
gpgcheck = false

[fieldshift]
channel = "beta"
trusted_keys = ["catalog.pub"]

[fieldshift.microshift.config]
dns = {{ baseDomain = "full.example.com" }}
network = {{ clusterNetwork = ["10.42.0.0/16"], serviceNetwork = ["10.43.0.0/16"] }}
"""


def write_oci_image(dest: Path) -> None:
    """A minimal OCI image layout (one layer with one file), as ``skopeo copy oci:`` reads it."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes, media: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    layer = buf.getvalue()
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer, "application/vnd.oci.image.layer.v1.tar")],
    }
    m = blob(json.dumps(manifest).encode(), "application/vnd.oci.image.manifest.v1+json")
    m["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [m]}))
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def write_full_blueprint(directory: Path, *, hello: str = "1.0", setting: str = "level=1",
                         first_user: str = "alice", second_user: str = "bob") -> Path:
    """The full blueprint plus the files it references, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "oci-image").exists():
        write_oci_image(directory / "oci-image")
    (directory / "catalog.pub").write_text("-----BEGIN PUBLIC KEY-----\nTEST\n-----END PUBLIC KEY-----\n")
    path = directory / "full.toml"
    path.write_text(FULL_BLUEPRINT.format(hello=hello, setting=setting, alice_key=ALICE_KEY,
                                          first_user=first_user, second_user=second_user))
    return path


@dataclass(frozen=True)
class Built:
    """One finished build: where its repo and cache are, and what it reported."""

    repo: Path
    cache: Path
    result: compose.BuildResult
    blueprint: Path
    output: Path
    payload: Path


def snapshot_payload(dest: Path) -> Path:
    """A frozen copy of the device payload (greenboot, updater) so builds in one run see the same inputs."""
    import shutil

    for pkg in ("greenboot", "updater"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="session")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_payload(tmp_path_factory.mktemp("payload"))


@pytest.fixture(scope="session")
def repo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture RPM repository (built once per machine) and a .repo file pointing at it."""
    return rpmrepo.write_repo(tmp_path_factory.mktemp("rpmrepo"))


def run_build(repo_file: Path, blueprint: Path, repo: Path, cache: Path, output: Path | None = None, *,
              payload: Path, **kw: object) -> compose.BuildResult:
    """``compose.build`` with the fixture repo, a fixed timestamp and the session's payload snapshot."""
    variables = kw.pop("variables", {"channel": "stable"})
    request = compose.BuildRequest(blueprint=blueprint, repos=(repo_file,), ostree_repo=repo, cache_dir=cache,
                                   output=output, source_date_epoch=EPOCH, variables=variables,  # type: ignore[arg-type]
                                   payload_source=payload, **kw)  # type: ignore[arg-type]
    return compose.build(request)


@pytest.fixture(scope="session")
def example(repo_file: Path, payload: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A cold build of the bundled MicroShift example, with outputs."""
    base = tmp_path_factory.mktemp("example")
    result = run_build(repo_file, EXAMPLE, base / "repo", base / "cache", base / "out", payload=payload)
    return Built(base / "repo", base / "cache", result, EXAMPLE, base / "out", payload)


@pytest.fixture(scope="session")
def full(repo_file: Path, payload: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A cold build of a blueprint using every customization the compose pipeline supports."""
    base = tmp_path_factory.mktemp("full")
    bp = write_full_blueprint(base / "bp")
    result = run_build(repo_file, bp, base / "repo", base / "cache", variables={}, payload=payload)
    return Built(base / "repo", base / "cache", result, bp, base / "out", payload)


def ostree_cat(built: Built, path: str) -> str:
    return subprocess.run(["ostree", "cat", f"--repo={built.repo}", built.result.commit, path],
                          check=True, capture_output=True, text=True).stdout


def ostree_ls(built: Built, *paths: str) -> list[str]:
    return subprocess.run(["ostree", "ls", f"--repo={built.repo}", "-d", built.result.commit, *paths],
                          check=True, capture_output=True, text=True).stdout.splitlines()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``fieldshift`` as a user would."""
    full_env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH), **(env or {}))
    return subprocess.run([sys.executable, "-m", "builder.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=full_env)
