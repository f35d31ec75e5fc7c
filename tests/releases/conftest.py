"""Shared, session-scoped fixtures for the release tests: keys, a build repo with three synthetic
commits made with ``ostree commit``, and a release directory with those three releases published."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from builder import keys, publish
from greenboot.external import run

REF = "fieldshift/x86_64/edge"
VERSIONS = ("1.0", "1.1", "1.2")


@dataclass(frozen=True)
class Builds:
    repo: Path
    commits: tuple[str, ...]   # one per VERSIONS entry
    ref: str = REF


@dataclass(frozen=True)
class Published:
    release_dir: Path
    builds: Builds
    keypair: keys.KeyPair
    results: tuple[publish.PublishResult, ...]


def _blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _write_tree(root: Path, step: int) -> None:
    """A small OS-like tree; each step changes a realistic fraction of it."""
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/etc").mkdir(parents=True, exist_ok=True)
    big = bytearray(_blob(1, 5 * 1024 * 1024))  # over ostree's 4 MB fallback threshold on purpose
    tool = bytearray(_blob(2, 400 * 1024))
    if step >= 1:
        tool[200_000:201_000] = _blob(20, 1000)           # a patched binary
        (root / "usr/lib/new-plugin.so").write_bytes(_blob(21, 30 * 1024))
    if step >= 2:
        big[4_000_000:4_002_000] = _blob(30, 2000)
    (root / "usr/lib/libbig.so").write_bytes(bytes(big))
    (root / "usr/bin/tool").write_bytes(bytes(tool))
    (root / "usr/etc/os-release").write_text(f'NAME="fieldshift test"\nVERSION_ID="{VERSIONS[step]}"\n')
    for i in range(40):
        (root / "usr/lib" / f"data-{i}.txt").write_text(f"file {i}\n" * 50)


def make_commit(repo: Path, tree: Path, version: str, ref: str = REF) -> str:
    return run(["ostree", "commit", f"--repo={repo}", f"--branch={ref}", f"--tree=dir={tree}",
                f"--subject=release {version}", f"--add-metadata-string=version={version}",
                "--timestamp=2026-11-25T00:00:00Z"]).stdout.strip()


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> keys.KeyPair:
    return keys.generate(tmp_path_factory.mktemp("publisher-keys"))


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    base = tmp_path_factory.mktemp("build")
    repo = base / "repo"
    run(["ostree", "init", f"--repo={repo}", "--mode=archive"])
    commits = []
    for step, version in enumerate(VERSIONS):
        tree = base / f"tree-{step}"
        _write_tree(tree, step)
        commits.append(make_commit(repo, tree, version))
    return Builds(repo=repo, commits=tuple(commits))


NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory, builds: Builds, keypair: keys.KeyPair) -> Published:
    release_dir = tmp_path_factory.mktemp("published") / "release"
    results = []
    for i, commit in enumerate(builds.commits):
        results.append(publish.publish(
            publish.PublishRequest(build_repo=builds.repo, ref=builds.ref, commit=commit, channel="stable",
                                   release_dir=release_dir, keys=(keypair.private_key,)),
            now=NOW - timedelta(hours=3 - i),
        ))
    return Published(release_dir, builds, keypair, tuple(results))
