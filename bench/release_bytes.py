"""Bytes a device moves for one update: our static delta vs an object pull vs the full commit.

Real Debian 12 trees are built with mmdebstrap from the host's own apt sources (cached under
``~/.cache/fieldshift/bench/``): a minbase system with a few packages, and the same system with one
package upgraded (OpenSSL: ``openssl`` + ``libssl3`` from the bookworm point release to the security
update). Two scenarios: the trees as Debian installs them, and the same without man pages and
/usr/share/doc (``dpkg --path-exclude``, as appliance and container images are usually built):
gzip-compressed docs change completely on every upgrade and no delta can shrink them. Each pair is
committed, published with builder.publish (static delta old -> new; the from-scratch delta is skipped
because it is not measured), served on 127.0.0.1 and pulled with stock ``ostree pull`` by a client
that has the old commit. Figures come from the server's access log. Per scenario it prints:

- delta: bytes the device-side fetcher (updater.delta: superblock + parts over HTTP, then
  ``ostree static-delta apply-offline``) moved, response bodies and headers;
- ostree pull total with deltas (on ostree 2022.7 this also includes objects fetched loose:
  ostreedev/ostree#2680);
- object pull: ``ostree pull --disable-static-deltas`` (no deltas);
- full commit: every object of the new commit (what a device without the old one fetches);
- lower bound: xz of a bsdiff of every changed file + xz of every new file;
- a catalog check when nothing changed, with HTTP caching (If-None-Match -> 304), both directions.

Targets (issue 5): delta <= 1.5 x lower bound; delta <= 10 % of the object pull; catalog check
< 1 KiB. Run: ``.venv/bin/python bench/release_bytes.py [--json]``.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder import keys, publish  # noqa: E402
from greenboot.external import run  # noqa: E402
from tests.httpserve import StaticServer  # noqa: E402
from updater import catalog as cat  # noqa: E402
from updater import delta as delta_fetch  # noqa: E402

OLD_OPENSSL = "3.0.20-1~deb12u2"   # bookworm point release
NEW_OPENSSL = "3.0.22-1~deb12u2"   # bookworm-security
BASE_PACKAGES = ("systemd", "systemd-sysv", "iproute2", "ca-certificates", "curl", "less", "procps", "kmod")
REF = "fieldshift/bench/x86_64/edge"
CACHE_VERSION = "1"


NODOCS = ("--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
          "--dpkgopt=path-include=/usr/share/doc/*/copyright")


@dataclass(frozen=True)
class Figures:
    scenario: str
    delta: int
    pull_with_deltas: int
    object_pull: int
    full_commit: int
    lower_bound: int
    changed_files: int
    new_files: int
    catalog_check: int


def _sources_file() -> str:
    for candidate in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        if os.path.exists(candidate):
            return candidate
    raise SystemExit("no host apt sources file found (need /etc/apt/sources.list.d/debian.sources or sources.list)")


def debian_tree(cache: Path, openssl_version: str, *, docs: bool) -> Path:
    """A minbase Debian 12 tree with BASE_PACKAGES and this OpenSSL version (built once, cached)."""
    tree = cache / f"debian12-openssl-{openssl_version}{'' if docs else '-nodocs'}-v{CACHE_VERSION}"
    if (tree / ".complete").exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="tree.", dir=cache))
    include = [*BASE_PACKAGES, f"openssl={openssl_version}", f"libssl3={openssl_version}"]
    print(f"building {tree.name} with mmdebstrap (once) ...", file=sys.stderr, flush=True)
    run(["mmdebstrap", "--variant=minbase", "--mode=root", f"--include={','.join(include)}",
         "--aptopt=Acquire::Languages \"none\"", *(() if docs else NODOCS), "bookworm", str(work / "root"),
         _sources_file()],
        timeout=1800)
    root = work / "root"
    for volatile in ("dev", "proc", "sys", "run", "tmp"):
        target = root / volatile
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    # Logs and caches differ between any two builds; a real compose drops them too.
    for transient in ("var/log", "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf", "var/cache/ldconfig"):
        shutil.rmtree(root / transient, ignore_errors=True)
    (root / ".complete").write_text("ok\n")
    os.rename(root, tree)
    shutil.rmtree(work, ignore_errors=True)
    return tree


def _files(tree: Path) -> dict[str, Path]:
    out = {}
    for dirpath, _, filenames in os.walk(tree):
        for name in filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and name != ".complete":
                out[str(path.relative_to(tree))] = path
    return out


def lower_bound(old: Path, new: Path, scratch: Path) -> tuple[int, int, int]:
    """xz(bsdiff(old, new)) of every changed regular file + xz(new) of every new one."""
    before, after = _files(old), _files(new)
    total = changed = added = 0
    for rel, path in after.items():
        data = path.read_bytes()
        if rel in before:
            if before[rel].read_bytes() == data:
                continue
            patch = scratch / "patch"
            run(["bsdiff", str(before[rel]), str(path), str(patch)])
            total += len(lzma.compress(patch.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
            changed += 1
        else:
            total += len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
            added += 1
    return total, changed, added


def _commit(repo: Path, tree: Path, version: str) -> str:
    return run(["ostree", "commit", f"--repo={repo}", f"--branch={REF}", f"--tree=dir={tree}",
                f"--subject=bench {version}", f"--add-metadata-string=version={version}",
                "--timestamp=2026-01-01T00:00:00Z"], timeout=1800).stdout.strip()


def _object_bytes(repo: Path, commit: str) -> int:
    """Bytes of every object of ``commit`` in an archive repo (a full object pull's payload)."""
    out = run(["ostree", "ls", f"--repo={repo}", "-R", "-C", commit]).stdout
    seen: set[tuple[str, str]] = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        if parts[0].startswith("d"):
            seen.add((parts[4], ".dirtree"))
            seen.add((parts[5], ".dirmeta"))
        else:
            seen.add((parts[4], ".filez"))
    total = (repo / "objects" / commit[:2] / f"{commit[2:]}.commit").stat().st_size
    for checksum, suffix in seen:
        path = repo / "objects" / checksum[:2] / f"{checksum[2:]}{suffix}"
        if path.exists():
            total += path.stat().st_size
    return total


def _client(path: Path, url: str, release_repo: Path, have: str) -> Path:
    run(["ostree", "init", f"--repo={path}", "--mode=bare"])
    run(["ostree", "remote", "add", f"--repo={path}", "--no-gpg-verify", "rel", url])
    run(["ostree", "pull-local", f"--repo={path}", str(release_repo), have], timeout=1800)
    run(["ostree", "refs", f"--repo={path}", "--create", f"rel:{REF}", have])
    return path


def measure(cache: Path, work: Path, *, docs: bool) -> Figures:
    old_tree = debian_tree(cache, OLD_OPENSSL, docs=docs)
    new_tree = debian_tree(cache, NEW_OPENSSL, docs=docs)
    build = work / "build"
    run(["ostree", "init", f"--repo={build}", "--mode=archive"])
    print("committing both trees ...", file=sys.stderr, flush=True)
    old = _commit(build, old_tree, "1")
    new = _commit(build, new_tree, "2")
    pair = keys.generate(work / "keys")
    release_dir = work / "release"
    print("publishing (static deltas) ...", file=sys.stderr, flush=True)
    for commit in (old, new):
        publish.publish(publish.PublishRequest(build_repo=build, ref=REF, commit=commit, channel="stable",
                                               release_dir=release_dir, keys=(pair.private_key,), deltas_from=1,
                                               scratch_delta=False))
    release_repo = release_dir / "repo"
    delta_size = publish.delta_size(release_repo, old, new)
    with StaticServer(release_dir) as server:
        url = f"{server.url}/repo"
        client = _client(work / "client-delta", url, release_repo, old)
        server.clear()
        run(["ostree", "pull", f"--repo={client}", "rel", f"{REF}@{new}"], timeout=1800)
        delta_fetched = sum(a.body_bytes for a in server.log if a.path.startswith("/repo/deltas/"))
        pull_with_deltas = server.bytes_sent()
        if delta_fetched != delta_size:
            print(f"note: delta on disk {delta_size} B, ostree pull fetched {delta_fetched} B of it", file=sys.stderr)
        client = _client(work / "client-fetcher", url, release_repo, old)
        catalog = cat.parse((release_dir / "catalog.json").read_bytes())
        server.clear()
        delta_fetch.fetch_and_apply(url, client, catalog.channel("stable").releases[-1], old,
                                    cache_dir=work / "fetch-cache")
        fetcher_bytes = server.bytes_sent()
        client = _client(work / "client-objects", url, release_repo, old)
        server.clear()
        run(["ostree", "pull", "--disable-static-deltas", f"--repo={client}", "rel", f"{REF}@{new}"], timeout=1800)
        object_pull = server.bytes_sent()
        session = requests.Session()
        session.headers.clear()
        session.headers["User-Agent"] = "fieldshift-agent/1"
        first = session.get(f"{server.url}/catalog.json", timeout=10)
        server.clear()
        again = session.get(f"{server.url}/catalog.json", headers={"If-None-Match": first.headers["ETag"]},
                            timeout=10)
        assert again.status_code == 304, again.status_code
        catalog_check = sum(a.wire_bytes for a in server.log)
    bound, changed, added = lower_bound(old_tree, new_tree, work)
    scenario = "as installed" if docs else "without man pages and docs"
    return Figures(scenario=scenario, delta=fetcher_bytes, pull_with_deltas=pull_with_deltas, object_pull=object_pull,
                   full_commit=_object_bytes(release_repo, new), lower_bound=bound, changed_files=changed,
                   new_files=added, catalog_check=catalog_check)


def report(f: Figures) -> str:
    def kib(n: int) -> str:
        return f"{n / 1024:,.1f} KiB"

    vs_bound = f.delta / f.lower_bound if f.lower_bound else float("inf")
    vs_objects = f.delta / f.object_pull if f.object_pull else float("inf")
    bound_vs_objects = f.lower_bound / f.object_pull if f.object_pull else float("inf")
    lines = [
        f"update: openssl/libssl3 {OLD_OPENSSL} -> {NEW_OPENSSL}, Debian 12 minbase + {len(BASE_PACKAGES)} "
        f"packages, {f.scenario}",
        f"  changed files {f.changed_files}, new files {f.new_files}",
        f"  static delta, fieldshift fetcher    {kib(f.delta):>14}   (superblock + parts + HTTP headers)",
        f"  ostree 2022.7 pull with deltas      {kib(f.pull_with_deltas):>14}   (incl. loose refetch, ostree#2680)",
        f"  object pull (no deltas)             {kib(f.object_pull):>14}",
        f"  full commit (all objects)           {kib(f.full_commit):>14}",
        f"  lower bound (xz of bsdiff + new)    {kib(f.lower_bound):>14}",
        f"  delta / lower bound   {vs_bound:6.2f}   target <= 1.50  {'OK' if vs_bound <= 1.5 else 'MISSED'}",
        f"  delta / object pull   {vs_objects:6.1%}   target <= 10 %  {'OK' if vs_objects <= 0.10 else 'MISSED'}"
        f"   (lower bound / object pull {bound_vs_objects:.1%})",
        f"  no-change catalog check (304, both directions) {f.catalog_check} B   target < 1024 B  "
        f"{'OK' if f.catalog_check < 1024 else 'MISSED'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "fieldshift" / "bench")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    results = []
    for docs in (True, False):
        with tempfile.TemporaryDirectory(prefix="release-bytes.", dir=args.cache) as tmp:
            results.append(measure(args.cache, Path(tmp), docs=docs))
    if args.json:
        print(json.dumps([f.__dict__ for f in results], indent=2))
    else:
        print("\n\n".join(report(f) for f in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
