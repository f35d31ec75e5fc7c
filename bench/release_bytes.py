"""Bytes a device moves for one update: our static delta vs an object pull vs the full commit.

Real Debian 12 trees are built with mmdebstrap from the host's own apt sources (cached under
``~/.cache/fieldshift/bench/``): a minbase system with a few packages, and the same system with one
package upgraded (OpenSSL: ``openssl`` + ``libssl3`` from the bookworm point release to the security
update). Two scenarios: the same trees without man pages and /usr/share/doc (``dpkg --path-exclude``,
as edge, appliance and container images are usually built; the dnf backend installs rpm images with
``tsflags=nodocs``), the primary case; and the trees as Debian installs them, where gzip-compressed docs
change completely on every upgrade and no delta can shrink them. Each pair is committed, published
with builder.publish (static delta old -> new, repacked by builder.deltapack; the from-scratch delta is
skipped because it is not measured), served on 127.0.0.1 and fetched by a client that has the old
commit. Figures come from the server's access log and count what crosses the wire at the HTTP level
in both directions: request lines and headers, response headers and bodies (TCP/IP and TLS framing
are not counted; they add a little per request, which favours the delta's few requests). Per scenario:

- catalog: the agent's catalog fetch when a release is out (``catalog.json`` 200 + ``catalog.json.sig``,
  with updater.sources, the agent's own HTTP client); both update paths below include it;
- delta: the agent's path, updater.delta (superblock + parts, then ``ostree static-delta apply-offline``);
- object pull: ``ostree pull --disable-static-deltas`` by checksum (no deltas): commit, dirtrees,
  dirmetas, file objects, each a request;
- stock ostree pull with deltas (not our agent): on ostree 2022.7 it also fetches some objects
  loose (ostreedev/ostree#2680), how many varies from run to run; shown for reference only;
- full commit: every object of the new commit (what a device without the old one fetches);
- lower bound: xz of a bsdiff of every changed file + xz of every new file (payload only);
- the delta's anatomy: superblock and part sizes as published, next to libostree's own delta of
  the same update (``static-delta generate`` alone: xz preset 6, some files as rollsum literals), the
  changed directory listings (dirtree objects, about 32 incompressible bytes per entry), objects per
  operation type;
- a catalog check when nothing changed, with HTTP caching (If-None-Match -> 304), both directions.

Targets (issue 5): delta <= 1.5 x lower bound; delta <= 10 % of the object pull; catalog check
< 1 KiB. Run: ``.venv/bin/python bench/release_bytes.py [--json]``.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from builder import keys, publish  # noqa: E402
from greenboot.external import run  # noqa: E402
from tests.httpserve import StaticServer  # noqa: E402
from updater import catalog as cat  # noqa: E402
from updater import delta as delta_fetch  # noqa: E402
from updater import sources  # noqa: E402

OLD_OPENSSL = "3.0.20-1~deb12u2"   # bookworm point release
NEW_OPENSSL = "3.0.22-1~deb12u2"   # bookworm-security
BASE_PACKAGES = ("systemd", "systemd-sysv", "iproute2", "ca-certificates", "curl", "less", "procps", "kmod")
REF = "fieldshift/bench/x86_64/edge"
CACHE_VERSION = "1"


NODOCS = ("--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
          "--dpkgopt=path-include=/usr/share/doc/*/copyright")


@dataclass(frozen=True)
class Figures:
    """Bytes on the wire (HTTP, both directions) unless the name says otherwise."""

    scenario: str
    catalog: int                # the agent's catalog fetch when a release is out; in delta and object_pull
    delta: int                  # catalog + superblock + parts
    delta_requests: int
    object_pull: int            # catalog + every object request
    object_requests: int
    pull_with_deltas: int       # stock ostree 2022.7, no catalog
    full_commit: int            # object payload only
    lower_bound: int            # payload only
    changed_files: int
    new_files: int
    catalog_check: int
    anatomy: dict = field(default_factory=dict)


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


def _wire(log: list, prefix: str = "") -> tuple[int, int]:
    """(bytes both directions, requests) of the logged requests whose path starts with ``prefix``."""
    picked = [a for a in log if a.path.startswith(prefix)]
    return sum(a.wire_bytes for a in picked), len(picked)


def _objects_fetched(log: list) -> str:
    kinds: dict[str, int] = {}
    for a in log:
        if a.path.startswith("/repo/objects/") and a.status == 200:
            kind = a.path.rsplit(".", 1)[-1]
            kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))


def _changed_dirtrees(repo: Path, old: str, new: str) -> tuple[int, int, int]:
    """(count, raw bytes, xz bytes together) of the dirtree objects the new commit adds."""
    def dirtrees(commit: str) -> set[str]:
        out = run(["ostree", "ls", f"--repo={repo}", "-R", "-C", commit]).stdout
        return {line.split()[4] for line in out.splitlines() if line.startswith("d")}

    added = sorted(dirtrees(new) - dirtrees(old))
    blob = b"".join((repo / "objects" / c[:2] / f"{c[2:]}.dirtree").read_bytes() for c in added)
    return len(added), len(blob), len(lzma.compress(blob, preset=9 | lzma.PRESET_EXTREME))


def anatomy(repo: Path, build: Path, old: str, new: str) -> dict:
    """What the published delta in ``repo`` is made of (``ostree static-delta show`` + the parts on disk),
    and the size of libostree's own delta of the same update, generated in the ``build`` repo as is."""
    run(["ostree", "static-delta", "generate", f"--repo={build}", f"--from={old}", f"--to={new}",
         "--min-fallback-size=0"], timeout=1800)
    directory = publish.delta_dir(repo, old, new)
    parts = sorted((p for p in directory.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    show = run(["ostree", "static-delta", "show", f"--repo={repo}", f"{old}-{new}"]).stdout
    ops: dict[str, int] = {}
    for match in re.finditer(r"(\w+)=(\d+)", " ".join(re.findall(r"PartPayloadOps\d+: (.*)", show))):
        ops[match.group(1)] = ops.get(match.group(1), 0) + int(match.group(2))
    fallback = re.search(r"Number of fallback entries: (\d+)", show)
    count, raw, packed = _changed_dirtrees(repo, old, new)
    return {
        "superblock": (directory / "superblock").stat().st_size,
        "parts": [p.stat().st_size for p in parts],
        "libostree_delta": publish.delta_size(build, old, new),
        "objects": sum(int(n) for n in re.findall(r"PartMeta\d+: nobjects=(\d+)", show)),
        "bspatch": ops.get("bspatch", 0),
        "rollsum_or_new": ops.get("open", 0) - ops.get("bspatch", 0),
        "spliced": ops.get("openspliceclose", 0),
        "fallback": int(fallback.group(1)) if fallback else 0,
        "dirtrees": count,
        "dirtree_bytes": raw,
        "dirtree_xz_bytes": packed,
    }


def _etag(path: Path) -> str:
    """The ETag tests.httpserve sends for ``path`` now (the agent's cached one, once the file changes)."""
    info = path.stat()
    return f'"{info.st_size:x}-{info.st_mtime_ns:x}"'


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
    stale_etag = ""
    for commit in (old, new):
        if stale_etag == "" and (release_dir / cat.CATALOG_NAME).exists():
            stale_etag = _etag(release_dir / cat.CATALOG_NAME)  # what a device running release 1 holds
        publish.publish(publish.PublishRequest(build_repo=build, ref=REF, commit=commit, channel="stable",
                                               release_dir=release_dir, keys=(pair.private_key,), deltas_from=1,
                                               scratch_delta=False))
    release_repo = release_dir / "repo"
    delta_size = publish.delta_size(release_repo, old, new)
    with StaticServer(release_dir) as server:
        url = f"{server.url}/repo"
        # The agent learns of the release: catalog changed since its cached ETag -> 200, then the signature.
        server.clear()
        got = sources.HttpSource([server.url], timeout=10).fetch(etag=stale_etag)
        assert isinstance(got, sources.Fetched), got
        catalog_bytes, _ = _wire(server.log)
        catalog = cat.parse(got.data)

        client = _client(work / "client-fetcher", url, release_repo, old)
        server.clear()
        delta_fetch.fetch_and_apply(url, client, catalog.channel("stable").releases[-1], old,
                                    cache_dir=work / "fetch-cache")
        log = server.log
        delta_wire, delta_requests = _wire(log)
        fetched = sum(a.body_bytes for a in log if a.path.startswith("/repo/deltas/"))
        assert fetched == delta_size and delta_wire == _wire(log, "/repo/deltas/")[0], (fetched, delta_size, log)

        client = _client(work / "client-objects", url, release_repo, old)
        server.clear()
        run(["ostree", "pull", "--disable-static-deltas", f"--repo={client}", "rel", f"{REF}@{new}"], timeout=1800)
        log = server.log
        object_wire, object_requests = _wire(log)
        print(f"object pull fetched: {_objects_fetched(log)}", file=sys.stderr)

        client = _client(work / "client-delta", url, release_repo, old)
        server.clear()
        run(["ostree", "pull", f"--repo={client}", "rel", f"{REF}@{new}"], timeout=1800)
        pull_with_deltas, _ = _wire(server.log)

        fresh = sources.HttpSource([server.url], timeout=10).fetch()
        assert isinstance(fresh, sources.Fetched)
        server.clear()
        again = sources.HttpSource([server.url], timeout=10).fetch(etag=fresh.etag)
        assert isinstance(again, sources.NotModified), again
        catalog_check, _ = _wire(server.log)
    bound, changed, added = lower_bound(old_tree, new_tree, work)
    scenario = "as installed" if docs else "without man pages and docs"
    return Figures(scenario=scenario, catalog=catalog_bytes, delta=catalog_bytes + delta_wire,
                   delta_requests=delta_requests + 2, object_pull=catalog_bytes + object_wire,
                   object_requests=object_requests + 2, pull_with_deltas=pull_with_deltas,
                   full_commit=_object_bytes(release_repo, new), lower_bound=bound, changed_files=changed,
                   new_files=added, catalog_check=catalog_check, anatomy=anatomy(release_repo, build, old, new))


def report(f: Figures) -> str:
    def kib(n: int) -> str:
        return f"{n / 1024:,.1f} KiB"

    a = f.anatomy
    vs_bound = f.delta / f.lower_bound if f.lower_bound else float("inf")
    vs_objects = f.delta / f.object_pull if f.object_pull else float("inf")
    bound_vs_objects = f.lower_bound / f.object_pull if f.object_pull else float("inf")
    target = 0.10 * f.object_pull
    lines = [
        f"update: openssl/libssl3 {OLD_OPENSSL} -> {NEW_OPENSSL}, Debian 12 minbase + {len(BASE_PACKAGES)} "
        f"packages, {f.scenario}",
        f"  changed files {f.changed_files}, new files {f.new_files}; HTTP bytes both directions (requests, "
        "headers, bodies)",
        f"  catalog fetch, release out (in both)  {kib(f.catalog):>14}   (catalog.json 200 + .sig)",
        f"  static delta, fieldshift agent      {kib(f.delta):>14}   ({f.delta_requests} requests: catalog, "
        "superblock, parts)",
        f"  object pull (no deltas)             {kib(f.object_pull):>14}   ({f.object_requests} requests: "
        "catalog, commit, dirtrees, files)",
        f"  stock ostree 2022.7 pull w/ deltas  {kib(f.pull_with_deltas):>14}   (not our agent; may refetch "
        "objects loose, ostree#2680)",
        f"  full commit (all objects, payload)  {kib(f.full_commit):>14}",
        f"  lower bound (xz of bsdiff + new)    {kib(f.lower_bound):>14}   (payload only)",
        f"  delta anatomy: superblock {a['superblock']:,} B + {len(a['parts'])} part(s) "
        f"{', '.join(f'{n:,} B' for n in a['parts'])}; libostree's own: {a['libostree_delta']:,} B "
        "(xz -6, rollsums)",
        f"    {a['objects']} objects: {a['bspatch']} bsdiff, {a['rollsum_or_new']} rollsum, {a['spliced']} whole "
        f"(of which {a['dirtrees']} dirtrees, {a['dirtree_bytes']:,} B raw, ~{a['dirtree_xz_bytes']:,} B xz), "
        f"{a['fallback']} fallback",
        f"  delta / lower bound   {vs_bound:6.2f}   target <= 1.50  {'OK' if vs_bound <= 1.5 else 'MISSED'}",
        f"  delta / object pull   {vs_objects:6.2%}  target <= 10 %  "
        + ("OK" if vs_objects <= 0.10 else f"MISSED by {kib(f.delta - round(target))}")
        + f"   (lower bound / object pull {bound_vs_objects:.2%})",
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
    for docs in (False, True):  # the doc-less image is the primary case
        with tempfile.TemporaryDirectory(prefix="release-bytes.", dir=args.cache) as tmp:
            results.append(measure(args.cache, Path(tmp), docs=docs))
    if args.json:
        print(json.dumps([f.__dict__ for f in results], indent=2))
    else:
        print("\n\n".join(report(f) for f in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
