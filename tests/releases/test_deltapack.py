"""builder.deltapack: static delta parts repacked harder (rollsum objects as bsdiff) still apply with stock
ostree, offline and over HTTP."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest

from builder import deltapack, publish
from greenboot.external import run
from tests.httpserve import StaticServer

WORDS = ("ostree", "delta", "part", "superblock", "commit", "dirtree", "dirmeta", "object", "checksum", "xz", "lzma",
         "device", "update")


def _text(seed: int, size: int) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    length = 0
    while length < size:
        out.append(f"{rng.choice(WORDS)}{rng.randrange(1000)}")
        length += len(out[-1]) + 1
    return " ".join(out)


def _commit(repo: Path, tree: Path, step: int) -> str:
    (tree / "usr/share/data").mkdir(parents=True, exist_ok=True)
    for i in range(6):
        body = _text(i, 200_000)
        if step and i % 2 == 0:
            body = body[:50_000] + _text(100 + i, 3_000) + body[50_000:]
        (tree / "usr/share/data" / f"table-{i}.txt").write_text(body)
    (tree / "usr/share/data" / "new.txt").write_text(_text(50 + step, 40_000))
    return run(["ostree", "commit", f"--repo={repo}", "--branch=t", f"--tree=dir={tree}", f"--subject={step}",
                "--timestamp=2026-01-01T00:00:00Z"]).stdout.strip()


@pytest.fixture
def delta(tmp_path: Path) -> tuple[Path, str, str]:
    repo = tmp_path / "server" / "repo"
    repo.mkdir(parents=True)
    run(["ostree", "init", f"--repo={repo}", "--mode=archive"])
    old = _commit(repo, tmp_path / "tree", 0)
    new = _commit(repo, tmp_path / "tree", 1)
    run(["ostree", "static-delta", "generate", f"--repo={repo}", f"--from={old}", f"--to={new}",
         "--min-fallback-size=0"])
    return repo, old, new


def _client(path: Path, server_repo: Path, have: str) -> Path:
    run(["ostree", "init", f"--repo={path}", "--mode=bare"])
    run(["ostree", "pull-local", f"--repo={path}", str(server_repo), have])
    return path


def _ops(repo: Path, old: str, new: str) -> dict[str, int]:
    show = run(["ostree", "static-delta", "show", f"--repo={repo}", f"{old}-{new}"]).stdout
    line = re.search(r"PartPayloadOps0: (.*)", show)
    assert line is not None, show
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


def test_repacked_delta_is_smaller_and_applies_offline_and_over_http(delta: tuple[Path, str, str],
                                                                       tmp_path: Path) -> None:
    repo, old, new = delta
    directory = publish.delta_dir(repo, old, new)
    before = _ops(repo, old, new)
    assert before.get("write", 0) > 0, before  # libostree sent some changed files as rollsum literals
    result = deltapack.repack(directory, repo=repo)
    assert result.after < result.before, result
    assert result.after == publish.delta_size(repo, old, new)
    assert not list(directory.glob("*.repack"))
    after = _ops(repo, old, new)
    assert after.get("write", 0) == 0 and after["bspatch"] == before["open"], (before, after)  # all bsdiff now

    offline = _client(tmp_path / "offline", repo, old)
    run(["ostree", "static-delta", "apply-offline", f"--repo={offline}", str(directory / "superblock")])
    run(["ostree", "fsck", f"--repo={offline}"])
    assert run(["ostree", "rev-parse", f"--repo={offline}", new]).stdout.strip() == new

    run(["ostree", "summary", "-u", f"--repo={repo}"])
    with StaticServer(repo.parent) as server:
        client = _client(tmp_path / "online", repo, old)
        run(["ostree", "remote", "add", f"--repo={client}", "--no-gpg-verify", "rel", f"{server.url}/repo"])
        run(["ostree", "pull", "--require-static-deltas", f"--repo={client}", "rel", new])
        fetched = [a.path.rsplit("/", 1)[1] for a in server.log if a.path.startswith("/repo/deltas/")]
    assert fetched == ["superblock", "0"]
    run(["ostree", "fsck", f"--repo={client}"])


def test_repack_is_idempotent_and_clears_leftovers_of_an_interrupted_run(delta: tuple[Path, str, str]) -> None:
    repo, old, new = delta
    directory = publish.delta_dir(repo, old, new)
    first = deltapack.repack(directory, repo=repo)
    (directory / "0.repack").write_bytes(b"half-written by a run that died")
    files = {p.name: p.read_bytes() for p in directory.iterdir() if not p.name.endswith(".repack")}
    again = deltapack.repack(directory, repo=repo)
    assert again.before == again.after == first.after
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files


def test_superblock_without_the_part_checksum_is_refused_before_anything_is_written(
        delta: tuple[Path, str, str]) -> None:
    repo, old, new = delta
    directory = publish.delta_dir(repo, old, new)
    part = (directory / "0").read_bytes()
    superblock = (directory / "superblock").read_bytes()
    with pytest.raises(deltapack.DeltaPackError, match="checksum"):
        deltapack.patch_superblock(superblock.replace(hashlib.sha256(part).digest(), bytes(32)), part, b"x")
    patched = deltapack.patch_superblock(superblock, part, b"x" + bytes(10))
    assert len(patched) == len(superblock) and hashlib.sha256(b"x" + bytes(10)).digest() in patched
