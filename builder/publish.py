"""Publish a build as a signed release: a static tree any HTTP server, CDN or object store can serve.

``fieldshift publish`` pulls a commit from the build repo into ``DIR/repo`` (an ostree archive repo),
GPG-signs it on request, generates static deltas to it from the channel's last N releases plus a
from-scratch delta, updates the summary, and writes a new signed catalog (see :mod:`updater.catalog`).
Layout of ``DIR`` (contract 4, docs/releases.md)::

    DIR/repo/               ostree archive repo: objects, deltas/, delta-indexes/, summary(.sig)
    DIR/catalog.json        the release catalog (served)
    DIR/catalog.json.sig    its detached Ed25519 signature(s), base64 lines (served)
    DIR/.publish.lock       held (flock) while a publish runs (not needed by clients)
    DIR/.publish-journal    exists only while a publish runs; left behind by a crash

Readers never see a mix: new objects and deltas are written first, then the ref and the summary
(whose old and new versions both describe complete content), then the two catalog files are
swapped, each atomically: the signature file first, holding the new catalog's signature *and* the
previous catalog's, then ``catalog.json``. A client that reads ``catalog.json`` and then
``catalog.json.sig`` therefore always gets a signature for the catalog it read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import click

from builder import deltapack
from builder import ostree as build_ostree
from greenboot import atomic
from greenboot.errors import UserError
from greenboot.external import ToolError, run
from updater import catalog as cat
from updater.delta import delta_path

REPO_NAME = "repo"
LOCK_NAME = ".publish.lock"
JOURNAL_NAME = ".publish-journal"
DEFAULT_DELTAS_FROM = 3
DEFAULT_VALID_DAYS = 30

log = logging.getLogger("fieldshift.publish")


class PublishError(UserError):
    """A release cannot be published as asked; nothing served has changed."""


@dataclass(frozen=True)
class PublishRequest:
    """What ``fieldshift publish`` was asked to do (a new release)."""

    build_repo: Path
    ref: str
    channel: str
    release_dir: Path
    keys: tuple[Path, ...]
    commit: str | None = None
    version: str | None = None
    barrier: bool = False
    rollout_hours: float | None = None
    deltas_from: int = DEFAULT_DELTAS_FROM
    gpg_key: str | None = None
    gpg_homedir: Path | None = None
    valid_days: int = DEFAULT_VALID_DAYS
    allow_downgrade: bool | None = None
    recover: bool = False
    #: The from-scratch delta (``--no-scratch-delta``: skip it; big trees take minutes to compute).
    scratch_delta: bool = True


@dataclass(frozen=True)
class PublishResult:
    """What was published: the release, the new catalog serial, and the deltas written."""

    release: cat.Release
    serial: int
    changed: bool
    deltas: tuple[cat.Delta, ...]

    def to_json(self) -> dict:
        return {
            "version": self.release.version,
            "commit": self.release.commit,
            "ref": self.release.ref,
            "serial": self.serial,
            "changed": self.changed,
            "withdrawn": self.release.withdrawn,
            "deltas": [{"from": d.from_commit, "size": d.size} for d in self.deltas],
        }


# --------------------------------------------------------------------------------------------
# The release repository: ostree operations only publishing needs (the rest is builder.ostree).


def _ostree(repo: Path, *args: str, gpg_homedir: Path | None = None) -> str:
    env = {"GNUPGHOME": os.fspath(gpg_homedir)} if gpg_homedir else None
    try:
        return run(["ostree", *args, f"--repo={repo}"], env=env).stdout
    except ToolError as err:
        last = (err.stderr.strip().splitlines() or ["no output"])[-1]
        raise PublishError(f"ostree {args[0]} in {repo} failed: {last}") from err


def delta_dir(repo: Path, from_commit: str | None, to_commit: str) -> Path:
    """Where ostree stores the static delta ``from_commit`` → ``to_commit`` (None = from scratch)."""
    return repo / delta_path(from_commit, to_commit)


def delta_size(repo: Path, from_commit: str | None, to_commit: str) -> int:
    """Bytes a client downloads for a delta: its superblock plus every part."""
    path = delta_dir(repo, from_commit, to_commit)
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def _generate_delta(repo: Path, from_commit: str | None, to_commit: str) -> cat.Delta:
    src = ["--empty"] if from_commit is None else [f"--from={from_commit}"]
    # --min-fallback-size=0: every object goes into the delta parts (no separate HTTP fetches), which
    # is also what lets a delta be applied offline from a bundle. --if-not-exists: ostree writes the
    # superblock last, so an existing one means a complete delta (safe to reuse after a crash).
    _ostree(repo, "static-delta", "generate", *src, f"--to={to_commit}", "--min-fallback-size=0", "--if-not-exists")
    # libostree packs parts with xz preset 6 and sends some changed files as rollsum literals; repacked
    # harder, with those as bsdiff, a one-package update is ~12 % smaller (builder.deltapack).
    # Idempotent, and crash-safe in the same sense: a delta without its superblock is regenerated.
    try:
        deltapack.repack(delta_dir(repo, from_commit, to_commit), repo=repo)
    except deltapack.DeltaPackError as err:  # raised before anything is written: ostree's delta stands
        log.warning("static delta to %s kept as libostree packed it: %s", to_commit[:12], err)
    return cat.Delta(from_commit=from_commit, size=delta_size(repo, from_commit, to_commit))


def _gpg_args(request_key: str | None, homedir: Path | None) -> list[str]:
    if not request_key:
        return []
    args = [f"--gpg-sign={request_key}"]
    if homedir:
        args.append(f"--gpg-homedir={homedir}")
    return args


def _update_summary(repo: Path, gpg_key: str | None, gpg_homedir: Path | None) -> None:
    _ostree(repo, "summary", "--update", *_gpg_args(gpg_key, gpg_homedir), gpg_homedir=gpg_homedir)


def _require_gpg_if_signed(release_dir: Path, gpg_key: str | None) -> None:
    """A GPG-signed release repo stays signed: rewriting its summary unsigned would break the clients."""
    if gpg_key is None and (release_dir / REPO_NAME / "summary.sig").exists():
        raise PublishError(
            f"{release_dir / REPO_NAME} is GPG-signed (summary.sig); pass --gpg-key so its summary and "
            "commits stay signed for gpg-verify clients"
        )


# --------------------------------------------------------------------------------------------
# Guarding the release directory.


def _probe_writable(release_dir: Path) -> None:
    try:
        release_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=release_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PublishError(f"release dir {release_dir} is not writable ({err.strerror})") from err


class _Journal:
    """Marks a publish in progress; ``touch()`` is called before the first write into the tree."""

    def __init__(self) -> None:
        self.touched = False

    def touch(self) -> None:
        self.touched = True


@contextlib.contextmanager
def _exclusive(release_dir: Path, *, recover: bool, what: str) -> Iterator[_Journal]:
    """Hold the publish lock and the journal for the duration of one publish.

    The journal file is removed when the block ends normally, or fails before anything was written;
    it stays behind (and the next publish refuses to run without --recover) when the process dies
    or fails after it started writing into the tree.
    """
    _probe_writable(release_dir)
    lock_fd = os.open(release_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise PublishError(f"another publish into {release_dir} is running; wait for it to finish") from err
        journal = release_dir / JOURNAL_NAME
        if journal.exists() and not recover:
            try:
                started = json.loads(journal.read_text()).get("what", "unknown")
            except (OSError, ValueError):
                started = "unknown"
            raise PublishError(
                f"a previous publish into {release_dir} ({started}) was interrupted; the served release is "
                "still the old one; rerun with --recover to finish over it"
            )
        atomic.write_json(journal, {"what": what, "pid": os.getpid(),
                                    "started": cat.format_time(datetime.now(timezone.utc))})
        state = _Journal()
        try:
            yield state
        except BaseException:
            if not state.touched:
                journal.unlink()
            raise
        journal.unlink()
        atomic.fsync_dir(release_dir)
    finally:
        os.close(lock_fd)


def load_current(release_dir: Path) -> tuple[cat.Catalog | None, bytes]:
    """The catalog currently served from ``release_dir`` (None if none yet) and its signature file."""
    data_path, sig_path = release_dir / cat.CATALOG_NAME, release_dir / cat.SIGNATURE_NAME
    if not data_path.exists():
        return None, b""
    try:
        parsed = cat.parse(data_path.read_bytes())
    except cat.CatalogMalformed as err:
        raise PublishError(f"{data_path} is not a valid catalog ({err.message}); fix or remove it") from err
    return parsed, sig_path.read_bytes() if sig_path.exists() else b""


def _write_catalog(release_dir: Path, new: cat.Catalog, keys: Sequence[Path], previous_sig: bytes) -> None:
    """Sign ``new`` with every key and swap it in: signature file first, then the catalog."""
    data, first = cat.sign(new, keys[0])
    lines = [first] + [cat.signature_line(data, cat.load_private_key(k)) for k in keys[1:]]
    # Keep the previous catalog's signature line(s) so a reader that already fetched the previous
    # catalog.json still finds a matching signature while the two files are being swapped.
    carried = [line + b"\n" for line in previous_sig.splitlines() if line.strip()][: len(keys)]
    sig = b"".join(lines + carried)
    atomic.write_bytes(release_dir / cat.SIGNATURE_NAME, sig)
    atomic.write_bytes(release_dir / cat.CATALOG_NAME, data)


# --------------------------------------------------------------------------------------------
# Publishing.


def _resolve_commit(request: PublishRequest) -> str:
    repo = request.build_repo
    if not (repo / "config").is_file() or not (repo / "objects").is_dir():
        raise PublishError(f"{repo} is not an ostree repository (pass the build repo with --ostree-repo)")
    head = build_ostree.rev_parse(repo, request.ref)
    if head is None:
        known = ", ".join(build_ostree.refs(repo)) or "none"
        raise PublishError(f"ref {request.ref!r} is not in {repo} (refs: {known})")
    if request.commit is None:
        return head
    commit = build_ostree.rev_parse(repo, request.commit)
    if commit is None or not (repo / "objects" / commit[:2] / f"{commit[2:]}.commit").exists():
        raise PublishError(f"commit {request.commit!r} is not in {repo}")
    return commit


def _release_version(request: PublishRequest, commit: str) -> str:
    version = request.version
    if version is None:
        value = build_ostree.metadata_value(request.build_repo, commit, "version")
        version = value if isinstance(value, str) and value else None
    if version is None:
        raise PublishError(f"commit {commit[:12]} has no 'version' metadata; pass --version")
    if not cat._VERSION_RE.match(version):
        raise PublishError(f"version {version!r} is not valid (letters, digits and . _ + ~ : -)")
    return version


def publish(request: PublishRequest, *, now: datetime | None = None,
            progress: Callable[[str], None] | None = None) -> PublishResult:
    """Publish one release into ``request.release_dir`` (see the module docstring for the order).

    ``progress`` receives one line per long step (the CLI prints them on stderr).
    """
    now = now or datetime.now(timezone.utc)
    say = progress or (lambda _line: None)
    if not request.keys:
        raise PublishError("no signing key given; pass --key (make one with `fieldshift keys generate`)")
    for key in request.keys:
        cat.load_private_key(key)  # a missing or loose key fails before anything is touched
    if request.deltas_from < 0:
        raise PublishError("--deltas-from must be 0 or more")
    commit = _resolve_commit(request)
    version = _release_version(request, commit)
    _require_gpg_if_signed(request.release_dir, request.gpg_key)
    release_dir = request.release_dir
    with _exclusive(release_dir, recover=request.recover, what=f"{request.channel} {version}") as journal:
        current, current_sig = load_current(release_dir)
        channel = (
            current.channel(request.channel)
            if current is not None and current.has_channel(request.channel)
            else cat.Channel(name=request.channel)
        )
        same = channel.find(version=version)
        if same is not None:
            if same.commit == commit:
                return PublishResult(same, current.serial if current else 0, False, same.deltas)
            raise PublishError(
                f"version {version} is already published in channel {request.channel!r} as commit "
                f"{same.commit[:12]}; give the new build a new version"
            )
        by_commit = channel.find(commit=commit)
        if by_commit is not None:
            raise PublishError(
                f"commit {commit[:12]} is already published in channel {request.channel!r} as version "
                f"{by_commit.version}"
            )
        newest = channel.newest(include_withdrawn=True)
        if newest is not None and not cat.is_newer(version, newest.version):
            raise PublishError(
                f"channel {request.channel!r} already has release {newest.version}, which is newer than "
                f"{version}; publish a higher version"
            )

        rollout = None
        if request.rollout_hours is not None:
            if request.rollout_hours < 0:
                raise PublishError("--rollout-hours must not be negative")
            rollout = cat.Rollout(start=now, hours=float(request.rollout_hours))

        journal.touch()
        repo = release_dir / REPO_NAME
        build_ostree.ensure_repo(repo, "archive")
        say(f"importing commit {commit[:12]} ({version}) into {repo}")
        _ostree(repo, "pull-local", os.fspath(request.build_repo), commit)
        if request.gpg_key:
            _ostree(repo, "gpg-sign", commit, request.gpg_key,
                    *([f"--gpg-homedir={request.gpg_homedir}"] if request.gpg_homedir else []),
                    gpg_homedir=request.gpg_homedir)
        sources: list[str | None] = []
        if request.deltas_from:
            sources = [r.commit for r in channel.releases[-request.deltas_from:]]
        deltas = []
        for src in [*sources, *([None] if request.scratch_delta else [])]:
            say(f"generating static delta from {src[:12] if src else 'scratch'} to {commit[:12]}")
            deltas.append(_generate_delta(repo, src, commit))
        say("updating the summary and signing the catalog")
        build_ostree.set_ref(repo, request.ref, commit)
        _update_summary(repo, request.gpg_key, request.gpg_homedir)

        release = cat.Release(
            version=version, ref=request.ref, commit=commit, published=now, deltas=tuple(deltas),
            barrier=request.barrier, rollout=rollout, withdrawn=False,
        )
        allow = channel.allow_downgrade if request.allow_downgrade is None else request.allow_downgrade
        new_channel = replace(channel, releases=(*channel.releases, release), allow_downgrade=allow)
        new = cat.next_catalog(current, now=now, valid_for=timedelta(days=request.valid_days))
        new = new.with_channel(new_channel)
        _write_catalog(release_dir, new, request.keys, current_sig)
        return PublishResult(release, new.serial, True, tuple(deltas))


def _change_catalog(
    release_dir: Path,
    keys: Sequence[Path],
    *,
    what: str,
    recover: bool,
    valid_days: int,
    now: datetime,
    change: Callable[[cat.Catalog], cat.Catalog],
) -> cat.Catalog:
    for key in keys:
        cat.load_private_key(key)
    if not (release_dir / cat.CATALOG_NAME).exists():
        raise PublishError(f"{release_dir} has no catalog.json; publish a release there first")
    with _exclusive(release_dir, recover=recover, what=what) as journal:
        current, current_sig = load_current(release_dir)
        assert current is not None
        journal.touch()
        new = change(cat.next_catalog(current, now=now, valid_for=timedelta(days=valid_days)))
        _write_catalog(release_dir, new, keys, current_sig)
        return new


def withdraw(
    release_dir: Path,
    channel_name: str,
    version: str,
    keys: Sequence[Path],
    *,
    gpg_key: str | None = None,
    gpg_homedir: Path | None = None,
    valid_days: int = DEFAULT_VALID_DAYS,
    recover: bool = False,
    now: datetime | None = None,
) -> PublishResult:
    """Mark ``version`` of a channel withdrawn (devices that have not taken it skip it).

    When the release's ref points at the withdrawn commit, the ref moves back to the newest release
    of that ref still offered, so stock ostree clients following the ref stop getting it too.
    """
    now = now or datetime.now(timezone.utc)
    current, _ = load_current(release_dir)
    if current is None:
        raise PublishError(f"{release_dir} has no catalog.json; nothing to withdraw")
    current.channel(channel_name).release(version)  # unknown channel or version: fail before writing
    _require_gpg_if_signed(release_dir, gpg_key)
    found: list[cat.Release] = []

    def change(new: cat.Catalog) -> cat.Catalog:
        channel = new.channel(channel_name)
        target = channel.release(version)
        found.append(target)
        releases = tuple(replace(r, withdrawn=True) if r is target else r for r in channel.releases)
        repo = release_dir / REPO_NAME
        if build_ostree.rev_parse(repo, target.ref) == target.commit:
            fallback = [r for r in releases if r.ref == target.ref and not r.withdrawn]
            if fallback:
                build_ostree.set_ref(repo, target.ref, fallback[-1].commit)
            else:
                _ostree(repo, "refs", "--delete", target.ref)
            _update_summary(repo, gpg_key, gpg_homedir)
        return new.with_channel(replace(channel, releases=releases))

    new = _change_catalog(release_dir, keys, what=f"withdraw {channel_name} {version}", recover=recover,
                          valid_days=valid_days, now=now, change=change)
    released = new.channel(channel_name).release(version)
    return PublishResult(released, new.serial, not found[0].withdrawn, released.deltas)


def refresh(release_dir: Path, keys: Sequence[Path], *, valid_days: int = DEFAULT_VALID_DAYS,
            recover: bool = False, now: datetime | None = None) -> cat.Catalog:
    """Re-sign the catalog unchanged with a new serial and expiry (run it before the catalog expires)."""
    return _change_catalog(release_dir, keys, what="refresh", recover=recover, valid_days=valid_days,
                           now=now or datetime.now(timezone.utc), change=lambda new: new)


# --------------------------------------------------------------------------------------------
# Command line.


@click.command("publish")
@click.option("--release-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The static release tree to write (served as is over HTTP).")
@click.option("--channel", required=True, help="Update channel, e.g. stable.")
@click.option("--key", "keys", required=True, multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Catalog signing key (catalog.key, mode 0600); repeat to sign with several keys.")
@click.option("--ostree-repo", "build_repo", type=click.Path(file_okay=False, path_type=Path),
              help="The build repo holding the commit.")
@click.option("--ref", help="Ref of the commit in the build repo (also the ref devices follow).")
@click.option("--commit", help="Publish this commit instead of the ref's head.")
@click.option("--version", "version", help="Release version (default: the commit's 'version' metadata).")
@click.option("--barrier", is_flag=True, help="Every device must pass through this release.")
@click.option("--rollout-hours", type=float, help="Phase the rollout in over this many hours.")
@click.option("--deltas-from", type=int, default=DEFAULT_DELTAS_FROM, show_default=True,
              help="Static deltas from this many previous releases (plus one from scratch).")
@click.option("--scratch-delta/--no-scratch-delta", default=True, show_default=True,
              help="Also a from-scratch delta (a new device's first pull in one file; minutes for a big tree).")
@click.option("--gpg-key", help="Also GPG-sign the commit and summary with this key id (ostree gpg-sign).")
@click.option("--gpg-homedir", type=click.Path(file_okay=False, path_type=Path), help="GnuPG home for --gpg-key.")
@click.option("--valid-days", type=int, default=DEFAULT_VALID_DAYS, show_default=True,
              help="Days until the catalog expires (re-sign with --refresh before then).")
@click.option("--allow-downgrade/--no-allow-downgrade", default=None,
              help="Let devices on this channel move to an older release (default: keep the channel's setting).")
@click.option("--withdraw", "withdraw_version", metavar="VERSION", help="Withdraw a published release instead.")
@click.option("--refresh", "do_refresh", is_flag=True, help="Only re-sign the catalog with a new serial and expiry.")
@click.option("--recover", is_flag=True, help="Finish over a publish that was interrupted.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def publish_command(
    release_dir: Path, channel: str, keys: tuple[Path, ...], build_repo: Path | None, ref: str | None,
    commit: str | None, version: str | None, barrier: bool, rollout_hours: float | None, deltas_from: int,
    scratch_delta: bool, gpg_key: str | None, gpg_homedir: Path | None, valid_days: int, allow_downgrade: bool | None,
    withdraw_version: str | None, do_refresh: bool, recover: bool, as_json: bool,
) -> None:
    """Publish a commit as a signed release (or withdraw one, or refresh the catalog)."""
    if valid_days < 1:
        raise PublishError("--valid-days must be at least 1")
    if do_refresh:
        new = refresh(release_dir, keys, valid_days=valid_days, recover=recover)
        click.echo(json.dumps({"serial": new.serial}) if as_json else f"catalog re-signed as serial {new.serial}")
        return
    if withdraw_version is not None:
        result = withdraw(release_dir, channel, withdraw_version, keys, gpg_key=gpg_key, gpg_homedir=gpg_homedir,
                          valid_days=valid_days, recover=recover)
        if as_json:
            click.echo(json.dumps(result.to_json()))
        else:
            click.echo(f"withdrew {channel} {withdraw_version} (catalog serial {result.serial})")
        return
    if build_repo is None or ref is None:
        raise PublishError("publishing needs --ostree-repo and --ref (or use --withdraw / --refresh)")
    result = publish(PublishRequest(
        build_repo=build_repo, ref=ref, channel=channel, release_dir=release_dir, keys=keys, commit=commit,
        version=version, barrier=barrier, rollout_hours=rollout_hours, deltas_from=deltas_from,
        scratch_delta=scratch_delta, gpg_key=gpg_key, gpg_homedir=gpg_homedir, valid_days=valid_days,
        allow_downgrade=allow_downgrade, recover=recover,
    ), progress=None if as_json else lambda line: click.echo(f"fieldshift: {line}", err=True))
    if as_json:
        click.echo(json.dumps(result.to_json()))
    elif not result.changed:
        click.echo(f"{channel} {result.release.version} is already published as {result.release.commit[:12]}")
    else:
        sizes = ", ".join(f"{(d.from_commit or 'scratch')[:12]}: {d.size} B" for d in result.deltas)
        click.echo(f"published {channel} {result.release.version} ({result.release.commit[:12]}) as catalog "
                   f"serial {result.serial}; deltas {sizes}")
