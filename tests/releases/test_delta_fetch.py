"""Device-side delta fetch: exactly the delta's bytes over HTTP, resumed after a dropped connection."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from greenboot.external import run
from tests.httpserve import StaticServer
from tests.releases.conftest import Published
from updater import catalog as cat
from updater import delta


def _catalog(published: Published) -> cat.Catalog:
    d = published.release_dir
    return cat.verify((d / "catalog.json").read_bytes(), (d / "catalog.json.sig").read_bytes(),
                      [published.keypair.public_key], last_serial=None, now=datetime.now(timezone.utc))


def _device_repo(path: Path, published: Published, commit: str) -> Path:
    run(["ostree", "init", f"--repo={path}", "--mode=bare"])
    run(["ostree", "pull-local", f"--repo={path}", str(published.builds.repo), commit])
    return path


def test_update_moves_exactly_the_signed_delta_size_even_across_a_dropped_connection(
    published: Published, tmp_path: Path
) -> None:
    c1, c2, c3 = published.builds.commits
    release = _catalog(published).channel("stable").release("1.2")
    expected = release.delta_from(c2)
    assert expected is not None
    repo = _device_repo(tmp_path / "device", published, c2)
    part = f"/repo/{delta.delta_path(c2, c3)}/0"
    cut = (published.release_dir / part.lstrip("/")).stat().st_size // 3
    assert cut > 100
    with StaticServer(published.release_dir) as server:
        server.cut(part, cut)  # the link drops a third of the way into the delta part
        result = delta.fetch_and_apply(f"{server.url}/repo", repo, release, c2, cache_dir=tmp_path / "cache")
        log = server.log
    assert result.commit == c3 and result.bytes_fetched == expected.size
    assert sum(a.body_bytes for a in log) == expected.size  # nothing fetched twice, no loose objects
    resumed = [a for a in log if a.path == part]
    assert [a.status for a in resumed] == [200, 206] and resumed[1].range == f"bytes={cut}-"
    assert delta.has_commit(repo, c3)
    run(["ostree", "fsck", f"--repo={repo}"])
    assert not any((tmp_path / "cache").iterdir())
    # Idempotent: the commit is there, nothing is fetched.
    assert delta.fetch_and_apply("http://127.0.0.1:9/repo", repo, release, c2,
                                 cache_dir=tmp_path / "cache").bytes_fetched == 0


def test_a_server_sending_more_than_the_signed_size_is_refused(published: Published, tmp_path: Path) -> None:
    c1, c2, c3 = published.builds.commits
    real = _catalog(published).channel("stable").release("1.2")
    real_delta = real.delta_from(c2)
    assert real_delta is not None
    lying = cat.Release(real.version, real.ref, real.commit, real.published,
                        deltas=(cat.Delta(c2, real_delta.size // 2),))
    repo = _device_repo(tmp_path / "device", published, c2)
    with StaticServer(published.release_dir) as server, pytest.raises(delta.DeltaFetchError, match="signed catalog"):
        delta.fetch_and_apply(f"{server.url}/repo", repo, lying, c2, cache_dir=tmp_path / "cache")
    assert not delta.has_commit(repo, c3)
