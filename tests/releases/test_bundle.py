"""Offline bundles: only the needed deltas, verified on the device, imported into an offline repo."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from builder.bundle import BundleBuildError, make_bundle
from greenboot.external import run
from tests.releases.conftest import Published
from updater import bundle as device_bundle
from updater import catalog as cat

NOW = datetime.now(timezone.utc)


def _offline_repo(path: Path, published: Published, with_commit: str | None = None) -> Path:
    run(["ostree", "init", f"--repo={path}", "--mode=bare"])
    if with_commit is not None:
        run(["ostree", "pull-local", f"--repo={path}", str(published.builds.repo), with_commit])
    return path


def _tree(repo: Path, commit: str) -> str:
    return run(["ostree", "ls", f"--repo={repo}", "-R", "-C", commit]).stdout


def test_bundle_from_a_version_holds_only_that_delta(published: Published, tmp_path: Path) -> None:
    c1, _, c3 = published.builds.commits
    info = make_bundle(published.release_dir, "stable", tmp_path / "b.tar", from_version="1.0")
    assert [(h.from_commit, h.to_commit) for h in info.hops] == [(c1, c3)]
    with tarfile.open(info.path) as tar:
        names = tar.getnames()
    assert names[:3] == ["catalog.json", "catalog.json.sig", "fieldshift-bundle.json"]
    assert all(n.startswith(info.hops[0].path + "/") for n in names[3:])
    scratch = cat.parse((published.release_dir / "catalog.json").read_bytes()).channel("stable").releases[-1]
    assert info.size < scratch.delta_from(None).size / 10


def test_bundle_applied_to_an_offline_repo_yields_the_same_commit(published: Published, tmp_path: Path) -> None:
    c1, _, c3 = published.builds.commits
    bundle = make_bundle(published.release_dir, "stable", tmp_path / "b.tar", from_version="1.0").path
    repo = _offline_repo(tmp_path / "device", published, with_commit=c1)
    accepted = device_bundle.apply_bundle(bundle, repo, [published.keypair.public_key], last_serial=None, now=NOW)
    assert accepted.channel("stable").newest().commit == c3
    assert device_bundle.has_commit(repo, c3)
    run(["ostree", "fsck", f"--repo={repo}"])
    assert _tree(repo, c3) == _tree(published.release_dir / "repo", c3)
    # Idempotent: a second import changes nothing and succeeds.
    device_bundle.apply_bundle(bundle, repo, [published.keypair.public_key], last_serial=accepted.serial, now=NOW)


def test_bundle_without_a_version_imports_from_scratch(published: Published, tmp_path: Path) -> None:
    c3 = published.builds.commits[-1]
    bundle = make_bundle(published.release_dir, "stable", tmp_path / "b.tar").path
    repo = _offline_repo(tmp_path / "empty", published)
    device_bundle.apply_bundle(bundle, repo, [published.keypair.public_key], last_serial=None, now=NOW)
    assert _tree(repo, c3) == _tree(published.release_dir / "repo", c3)


def test_bundle_for_another_version_is_refused_clearly(published: Published, tmp_path: Path) -> None:
    bundle = make_bundle(published.release_dir, "stable", tmp_path / "b.tar", from_version="1.1").path
    repo = _offline_repo(tmp_path / "device", published, with_commit=published.builds.commits[0])
    with pytest.raises(device_bundle.BundleError, match="updates from release 1.1"):
        device_bundle.apply_bundle(bundle, repo, [published.keypair.public_key], last_serial=None, now=NOW)


def _rewrite(
    src: Path, dst: Path, replace: dict[str, bytes], extra: tuple[tarfile.TarInfo, bytes] | None = None
) -> Path:
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()
            data = replace.get(member.name, data)
            member.size = len(data)
            tout.addfile(member, io.BytesIO(data))
        if extra is not None:
            tout.addfile(extra[0], io.BytesIO(extra[1]))
    return dst


def test_bundle_with_a_tampered_catalog_is_refused(published: Published, tmp_path: Path) -> None:
    bundle = make_bundle(published.release_dir, "stable", tmp_path / "b.tar").path
    data = (published.release_dir / "catalog.json").read_bytes().replace(b'"barrier": false', b'"barrier": true ', 1)
    bad = _rewrite(bundle, tmp_path / "bad.tar", {"catalog.json": data})
    repo = _offline_repo(tmp_path / "device", published)
    with pytest.raises(cat.CatalogSignatureInvalid):
        device_bundle.apply_bundle(bad, repo, [published.keypair.public_key], last_serial=None, now=NOW)
    assert not device_bundle.has_commit(repo, published.builds.commits[-1])


def test_bundle_delta_to_a_commit_the_catalog_does_not_list_is_refused(published: Published, tmp_path: Path) -> None:
    bundle = make_bundle(published.release_dir, "stable", tmp_path / "b.tar").path
    with tarfile.open(bundle) as tar:
        manifest = json.loads(tar.extractfile("fieldshift-bundle.json").read())
    manifest["hops"][0]["to"] = "e" * 64
    bad = _rewrite(bundle, tmp_path / "bad.tar", {"fieldshift-bundle.json": json.dumps(manifest).encode()})
    with pytest.raises(cat.CommitMismatch):
        device_bundle.apply_bundle(bad, _offline_repo(tmp_path / "device", published),
                                   [published.keypair.public_key], last_serial=None, now=NOW)


def test_bundle_with_an_unexpected_path_is_refused(published: Published, tmp_path: Path) -> None:
    bundle = make_bundle(published.release_dir, "stable", tmp_path / "b.tar").path
    evil = tarfile.TarInfo("../../etc/cron.d/evil")
    evil.size = 3
    bad = _rewrite(bundle, tmp_path / "bad.tar", {}, extra=(evil, b"x\n\n"))
    with pytest.raises(device_bundle.BundleError, match="unsafe path"):
        device_bundle.apply_bundle(bad, _offline_repo(tmp_path / "device", published),
                                   [published.keypair.public_key], last_serial=None, now=NOW)


def test_bundle_from_the_newest_version_is_refused(published: Published, tmp_path: Path) -> None:
    with pytest.raises(BundleBuildError, match="needs nothing"):
        make_bundle(published.release_dir, "stable", tmp_path / "b.tar", from_version="1.2")
    assert not (tmp_path / "b.tar").exists()
