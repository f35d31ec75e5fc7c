"""The ``ostree`` command line, wrapped for the builder: init, commit, rev-parse, show, ls, cat, checkout.

Device-side ostree calls live in ``updater/ostree.py``; this module is only used at build time.
Metadata values are passed as GVariant text (:func:`gvariant`), as ``ostree commit --add-metadata``
takes them.
"""

from __future__ import annotations

import ast
import datetime as dt
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from greenboot.errors import UserError
from greenboot.external import ToolError, run

log = logging.getLogger("fieldshift.external")


class OstreeError(UserError):
    """An ostree repository operation failed."""


@dataclass(frozen=True)
class CommitInfo:
    """What ``ostree show`` says about a commit."""

    checksum: str
    content_checksum: str
    parent: str | None
    version: str | None
    timestamp: str


@dataclass(frozen=True)
class Entry:
    """One line of ``ostree ls``: type (``-``, ``d``, ``l``), mode, owner ids, size, path, symlink target."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    path: str
    target: str = ""


def gvariant(value: Any) -> str:
    """GVariant text for a str, bool, int, or list/tuple of those (tuples become GVariant tuples)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"int64 {value}"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        return f"'{escaped}'"
    if isinstance(value, tuple):
        return "(" + ", ".join(gvariant(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        if not value:
            return "@as []"
        return "[" + ", ".join(gvariant(v) for v in value) + "]"
    raise TypeError(f"no GVariant text form for {type(value).__name__}")


def _ostree(repo: Path, *args: str, check: bool = True) -> str:
    try:
        return run(["ostree", *args, f"--repo={repo}"], check=check).stdout
    except ToolError as err:
        raise OstreeError(f"ostree {args[0]} in {repo} failed: {err.stderr.strip().splitlines()[-1:]}") from err


def ensure_repo(repo: Path, mode: str = "archive") -> None:
    """Create an ostree repository at ``repo`` unless one is there already."""
    if (repo / "config").exists() and (repo / "objects").is_dir():
        return
    repo.mkdir(parents=True, exist_ok=True)
    if any(repo.iterdir()):
        raise OstreeError(f"{repo} is not empty and not an ostree repository; pass an empty or existing repo")
    _ostree(repo, "init", f"--mode={mode}")


def rev_parse(repo: Path, ref: str) -> str | None:
    """The commit a ref (or a commit id) names, or ``None`` when it does not exist."""
    proc = run(["ostree", "rev-parse", f"--repo={repo}", ref], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def commit(
    repo: Path,
    tree: Path,
    *,
    ref: str | None,
    subject: str,
    metadata: Mapping[str, Any],
    timestamp: int,
    parent: str | None = None,
    consume: bool = False,
    base: str | None = None,
    selinux_policy: Path | None = None,
    layers: Sequence[str] = (),
) -> str:
    """Commit ``tree`` (owners and modes as on disk) and move ``ref`` to it; returns the checksum.

    With ``base`` (a commit in ``repo``) the tree is laid over it (``--tree=ref=BASE --tree=dir=TREE``):
    entries of ``tree`` win, everything else comes from ``base`` without being read again. With
    ``layers`` (commits) those are laid over ``base`` instead of ``tree`` (a pure metadata merge).

    Durability: base and layer commits are written with ``--fsync=false``; this commit's transaction
    ends with ostree's ``syncfs`` of the repository's filesystem (covering them too) and only then
    writes the ref, so a failure or a crash never leaves a ref pointing at missing objects (ostree
    ``ostree_repo_commit_transaction``). Without ``ref`` the commit is an orphan. ``timestamp`` makes
    the commit reproducible. ``selinux_policy`` (a root holding
    ``usr/etc/selinux``) labels every file with that policy's file contexts, as rpm-ostree does.
    """
    when = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    trees = [f"--tree=ref={c}" for c in ([base] if base else []) + list(layers)]
    if not layers:
        trees.append(f"--tree=dir={tree}")
    # --branch also records the ref binding that pulls by ref verify.
    argv = ["commit", *trees, f"--timestamp={when}", f"--subject={subject}",
            f"--branch={ref}" if ref else "--orphan"]
    if selinux_policy is not None:
        argv.append(f"--selinux-policy={selinux_policy}")
    if parent:
        argv.append(f"--parent={parent}")
    if consume:
        argv.append("--consume")
    for key in sorted(metadata):
        value = metadata[key]
        if isinstance(value, str):
            argv.append(f"--add-metadata-string={key}={value}")
        else:
            argv.append(f"--add-metadata={key}={gvariant(value)}")
    return _ostree(repo, *argv).strip()


def _base_argv(tree: Path, selinux_policy: Path | None) -> list[str]:
    argv = ["commit", f"--tree=dir={tree}", "--orphan", "--fsync=false", "--no-bindings",
            "--timestamp=1970-01-01T00:00:00Z", "--subject=fieldshift base"]
    if selinux_policy is not None:
        argv.append(f"--selinux-policy={selinux_policy}")
    return argv


def commit_base(repo: Path, tree: Path, skip: Sequence[str] = (), selinux_policy: Path | None = None) -> str:
    """An orphan commit of ``tree`` (minus the absolute paths in ``skip``), for :func:`commit` ``base``
    or ``layers``; not synced: the :func:`commit` that uses it syncs."""
    argv = _base_argv(tree, selinux_policy)
    if skip:
        skip_file = tree.parent / f".skip-{os.getpid()}"
        skip_file.write_text("".join(f"{p}\n" for p in skip))
        argv.append(f"--skip-list={skip_file}")
    try:
        checksum = _ostree(repo, *argv).strip()
    finally:
        if skip:
            skip_file.unlink()
    return checksum


def content_checksum(repo: Path, checksum: str) -> str:
    """A commit's content checksum (what ``ostree show`` prints as ContentChecksum), read from the object.

    The commit object is the GVariant ``(a{sv}aya(say)sstayay)``; its last two members are the root
    dirtree and dirmeta checksums, and the content checksum is SHA-256 over those 64 bytes
    (ostree ``ostree_commit_get_content_checksum``). Framing offsets of the six variable-size members
    before the last sit at the end of the object, little-endian, last member's first.
    """
    import hashlib

    data = (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").read_bytes()
    n = len(data)
    size = 1 if n <= 0xFF else 2 if n <= 0xFFFF else 4 if n <= 0xFFFFFFFF else 8
    table = n - 6 * size
    end_contents = int.from_bytes(data[table:table + size], "little")
    contents = data[end_contents - 32:end_contents]
    meta = data[end_contents:table]
    if len(contents) != 32 or len(meta) != 32:
        raise OstreeError(f"commit {checksum[:12]} in {repo} is not a commit object ostree wrote")
    return hashlib.sha256(contents + meta).hexdigest()


class BackgroundCommit:
    """A :func:`commit_base` running as a background process (see :func:`start_commit_base`)."""

    def __init__(self, argv: list[str], skip_file: Path | None) -> None:
        log.debug("run (background): %s", " ".join(argv))
        self.argv = argv
        self.skip_file = skip_file
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self) -> str | None:
        """The commit checksum, or ``None`` if ostree failed (logged)."""
        out, err = self.proc.communicate()
        self._cleanup()
        if self.proc.returncode != 0:
            log.warning("background base commit failed: %s", err.strip())
            return None
        return out.strip()

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()
        self._cleanup()

    def _cleanup(self) -> None:
        if self.skip_file is not None:
            self.skip_file.unlink(missing_ok=True)
            self.skip_file = None


def start_commit_base(repo: Path, tree: Path, skip: Sequence[str] = (),
                      selinux_policy: Path | None = None) -> BackgroundCommit:
    """:func:`commit_base` in the background; ``wait()`` on the result gives the checksum."""
    argv = ["ostree", *_base_argv(tree, selinux_policy), f"--repo={repo}"]
    skip_file = None
    if skip:
        skip_file = tree.parent / f".skip-bg-{os.getpid()}-{id(argv)}"
        skip_file.write_text("".join(f"{p}\n" for p in skip))
        argv.append(f"--skip-list={skip_file}")
    return BackgroundCommit(argv, skip_file)


def has_commit(repo: Path, checksum: str) -> bool:
    """Whether the commit object is in the repository (a file test, no subprocess)."""
    return (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").exists()


def set_ref(repo: Path, ref: str, checksum: str) -> None:
    """Point ``ref`` at ``checksum`` (creating or moving it)."""
    _ostree(repo, "refs", "--force", f"--create={ref}", checksum)


def show(repo: Path, rev: str, *, parent: str | None = None) -> CommitInfo:
    """Parse ``ostree show`` of a commit (``parent`` given: trusted, not looked up; ``""`` means none)."""
    checksum = rev if re.fullmatch(r"[0-9a-f]{64}", rev) else rev_parse(repo, rev)
    if checksum is None:
        raise OstreeError(f'"{rev}" is neither a ref nor a commit in {repo}')
    text = _ostree(repo, "show", checksum)
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith(" "):
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
    if parent is None:
        parent = rev_parse(repo, f"{checksum}^")
    return CommitInfo(
        checksum=checksum,
        content_checksum=fields.get("ContentChecksum", ""),
        parent=parent or None,
        version=fields.get("Version"),
        timestamp=fields.get("Date", ""),
    )


def metadata_value(repo: Path, rev: str, key: str) -> Any:
    """A commit metadata value parsed from its GVariant text (``None`` when the key is absent)."""
    proc = run(["ostree", "show", f"--repo={repo}", f"--print-metadata-key={key}", rev], check=False)
    if proc.returncode != 0:
        return None
    text = proc.stdout.strip()
    if text.startswith("@"):
        text = text.split(" ", 1)[1]
    text = text.replace("<", "").replace(">", "")
    for prefix in ("uint64 ", "int64 ", "uint32 ", "int32 "):
        text = text.replace(prefix, "")
    text = text.replace("true", "True").replace("false", "False")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def ls(repo: Path, rev: str, path: str = "/", *, recursive: bool = False) -> list[Entry]:
    """``ostree ls`` of ``path`` in a commit: the entry itself for files, the children for directories."""
    argv = ["ls", rev, path]
    if recursive:
        argv.insert(1, "-R")
    out = _ostree(repo, *argv)
    entries = []
    for line in out.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 5:
            continue
        kind_mode, uid, gid, size, rest = parts
        name, _, target = rest.partition(" -> ")
        entries.append(Entry(kind_mode[0], int(kind_mode[1:], 8), int(uid), int(gid), int(size), name, target))
    return entries


def cat(repo: Path, rev: str, path: str) -> str:
    """The text of a file in a commit."""
    return _ostree(repo, "cat", rev, path)


def exists(repo: Path, rev: str, path: str) -> bool:
    """Whether ``path`` exists in the commit."""
    return run(["ostree", "ls", f"--repo={repo}", "-d", rev, path], check=False).returncode == 0


def checkout(repo: Path, rev: str, dest: Path, *, subpath: str | None = None, user_mode: bool = False) -> None:
    """Check out a commit (or ``subpath`` of it) into ``dest``, hardlinking from the repo where possible."""
    argv = ["checkout", "--force-copy-zerosized" if not user_mode else "-U"]
    if subpath:
        argv.append(f"--subpath={subpath}")
    argv += [rev, os.fspath(dest)]
    _ostree(repo, *argv)


def refs(repo: Path) -> Sequence[str]:
    """All refs in the repository."""
    return [r for r in _ostree(repo, "refs").splitlines() if r]
