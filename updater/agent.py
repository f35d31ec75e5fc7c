"""The update agent: check, choose, download, protect data, arm, stage, reboot by policy, confirm.

Each step is a method that reads the persisted :class:`~updater.state.State`, does idempotent work
and records the next phase (:mod:`updater.state` lists them). :meth:`Agent.advance` runs steps until
one has to wait (for the poll timer, a window, a lock, a reboot, greenboot). :meth:`Agent.reconcile`
is the early-boot step: it works out which deployment booted and either confirms the update, or,
after a GRUB fallback, makes the rollback permanent, restores the protected data and denylists the
release. Failures never leave the device worse off: the step is retried after a backoff and the
reason is in ``status`` and the journal.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from greenboot import atomic
from greenboot.errors import UserError
from updater import catalog as catalog_mod
from updater import rollout, schedule
from updater.backends import OstreeBackend, RpmOstreeBackend, select
from updater.choose import choose
from updater.config import AgentConfig
from updater.fleetlock import FleetLock
from updater.journal import Journal
from updater.ostree import Deployment, Sysroot
from updater.reports import EventQueue, state_metrics, write_textfile
from updater.snapshots import SnapshotStore
from updater.sources import DirSource, Fetched, HttpSource, NotModified, SourceError
from updater.state import (
    ARMED,
    CONFIRMING,
    DOWNLOADED,
    IDLE,
    IN_FLIGHT,
    PROTECTED,
    REBOOTING,
    SELECTED,
    STAGED,
    State,
    StateStore,
    Target,
    reconcile_needed,
)
from updater.transport import HttpClient

MICROSHIFT_DATA = Path("/var/lib/microshift")
MICROSHIFT_HEALTH = Path("/var/lib/microshift-backups/health.json")
# After asking for the reboot, how long the same boot may keep running before the request counts as
# lost (a reboot job cancelled or refused) and is made again.
REBOOT_GRACE_SECONDS = 600


class AgentError(UserError):
    """A step cannot proceed; the message says why (shown in status, retried later)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def run_reboot_command(argv: tuple[str, ...]) -> Callable[[], None]:
    def reboot() -> None:
        from greenboot.external import run

        run(list(argv))

    return reboot


@dataclass
class Agent:
    """One agent over one configuration; time, randomness, reboot and HTTP are injectable."""

    cfg: AgentConfig
    now: Callable[[], datetime] = utcnow
    reboot_fn: Callable[[], None] | None = None
    rng: random.Random = field(default_factory=random.Random)
    http: HttpClient | None = None
    bundle_file: Path | None = None  # an offline bundle (``fieldshift bundle``) used as the only source

    def __post_init__(self) -> None:
        p = self.cfg.paths
        self.store = StateStore(p.state_dir)
        self.sysroot = Sysroot(p.sysroot)
        self.journal = Journal(p.journal_socket)
        self.snapshots = SnapshotStore(p.state_dir / "snapshots")
        self.catalog_dir = p.state_dir / "catalog"
        if self.reboot_fn is None:
            self.reboot_fn = run_reboot_command(self.cfg.reboot_command)
        if self.http is None:
            self.http = HttpClient(timeout=float(self.cfg.http_timeout_seconds))
        self._backend: OstreeBackend | RpmOstreeBackend | None = None
        self._machine_id: str | None = None
        self.events = EventQueue(p.state_dir / "events", self.cfg.report_url, self.node_id())

    # ------------------------------------------------------------------ identity and environment

    @property
    def grubenv(self) -> Path:
        if self.cfg.paths.grubenv is not None:
            return self.cfg.paths.grubenv
        from greenboot.bootcount import grubenv_for

        return grubenv_for(self.cfg.paths.greenboot_root)

    def machine_id(self) -> str:
        if self._machine_id is None:
            self._machine_id = rollout.read_machine_id(self.cfg.paths.machine_id)
        return self._machine_id

    def node_id(self) -> str:
        if self.cfg.node_id:
            return self.cfg.node_id
        try:
            return rollout.node_id(self.machine_id())
        except UserError:
            return "unknown"

    @property
    def backend(self) -> OstreeBackend | RpmOstreeBackend:
        if self._backend is None:
            self._backend = select(self.cfg.backend, self.sysroot)
        return self._backend

    def boot_id(self) -> str:
        try:
            return self.cfg.paths.boot_id.read_text(encoding="ascii").strip()
        except OSError:
            return ""

    def booted(self, *, fresh: bool = True) -> Deployment | None:
        """The deployment this boot runs, identified once per boot (by the inode of ``/`` like ostree,
        else the ``ostree=`` kernel argument) and cached with the boot id. ``fresh=False`` answers from
        the cache without running ``ostree admin status`` (the cheap path of a routine check; the
        index may be stale then)."""
        cache = self.cfg.paths.state_dir / "booted.json"
        boot = self.boot_id()
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cached = {}
        if not boot or cached.get("boot_id") != boot:
            cached = {}
        if not fresh and cached.get("checksum"):
            return Deployment(int(cached["index"]), cached["osname"], cached["checksum"], int(cached["serial"]),
                              cached.get("version", ""))
        name = cached.get("deployment")
        if name is None:
            found = self.sysroot.deployment_of_root(self.cfg.paths.booted_root)
            if found is None:
                try:
                    cmdline = self.cfg.paths.kernel_cmdline.read_text(encoding="utf-8")
                except OSError:
                    cmdline = ""
                found = self.sysroot.deployment_of_cmdline(cmdline)
            if found is None:
                return None
            name = found[1]
        for d in self.sysroot.deployments():
            if d.id == name:
                record = {"boot_id": boot, "deployment": name, "index": d.index, "osname": d.osname,
                          "checksum": d.checksum, "serial": d.serial, "version": d.version}
                if record != cached:
                    atomic.write_json(cache, record)
                return d
        return None

    def osname(self, booted: Deployment | None) -> str:
        if self.cfg.os_name:
            return self.cfg.os_name
        if booted is not None:
            return booted.osname
        deployments = self.sysroot.deployments()
        if deployments:
            return deployments[0].osname
        raise AgentError("no os_name configured and the sysroot has no deployment to take it from")

    def data_paths(self) -> tuple[Path, ...]:
        if self.cfg.data_paths is not None:
            return self.cfg.data_paths
        if not self.cfg.paths.microshift_marker.exists():
            return ()
        root = self.cfg.paths.greenboot_root
        # MicroShift 4.14+ backs up and restores its own data per deployment (health.json present):
        # leave /var/lib/microshift to it (docs/agent.md, "Data protection").
        if (root / str(MICROSHIFT_HEALTH).lstrip("/")).exists():
            return ()
        return (root / str(MICROSHIFT_DATA).lstrip("/"),)

    def boot_attempts(self) -> int:
        if self.cfg.boot_attempts:
            return self.cfg.boot_attempts
        from greenboot import config as gb_config

        try:
            return int(gb_config.load(self.cfg.paths.greenboot_root).max_boot_attempts)
        except UserError:
            return 3

    # ------------------------------------------------------------------ reporting

    def _say(self, event: str, message: str, *, priority: str = "info", **fields: Any) -> None:
        self.journal.send(event, message, priority=priority, **{k: str(v) for k, v in fields.items()})
        self.events.put(event, {"message": message, **fields})

    def _save(self, state: State) -> State:
        self.store.save(state)
        self._metrics(state)
        return state

    def _metrics(self, state: State) -> None:
        try:
            write_textfile(self.cfg.paths.prometheus_textfile, state_metrics(state))
        except OSError:
            pass

    def _fail(self, state: State, step: str, err: UserError) -> State:
        failures = state.failures + 1
        delay = schedule.backoff_delay(failures, self.cfg.backoff_initial_seconds, self.cfg.backoff_max_seconds,
                                       self.rng)
        retry = self.now() + timedelta(seconds=delay)
        self._say("step_failed", f"{step} failed, retrying after {_iso(retry)}: {err.message}", priority="warning",
                  step=step, phase=state.phase)
        return self._save(state.update(last_error=f"{step}: {err.message}", failures=failures, retry_after=_iso(retry)))

    # ------------------------------------------------------------------ catalog

    def _sources(self) -> list[HttpSource | DirSource]:
        out: list[HttpSource | DirSource] = []
        if self.cfg.source_dir is not None:
            out.append(DirSource(self.cfg.source_dir))
        if self.cfg.release_urls:
            out.append(HttpSource(self.cfg.release_urls, timeout=self.cfg.http_timeout_seconds,
                                  client=self.http))
        if not out:
            raise AgentError("no release source configured (set release_url or source_dir)")
        return out

    def _cached(self) -> Fetched | None:
        try:
            data = (self.catalog_dir / "catalog.json").read_bytes()
            sig = (self.catalog_dir / "catalog.json.sig").read_bytes()
            base = (self.catalog_dir / "source").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return Fetched(data, sig, base)

    def _verify(self, fetched: Fetched, state: State) -> catalog_mod.Catalog:
        return catalog_mod.verify(fetched.data, fetched.signature, list(self.cfg.trusted_keys),
                                  last_serial=state.catalog_serial, now=self.now())

    def fetch_catalog(self, state: State) -> tuple[State, catalog_mod.Catalog, str]:
        """Fetch (with HTTP caching) and verify the catalog; return state, catalog and the repo location."""
        if self.bundle_file is not None:
            return self._fetch_bundle(state)
        errors = []
        for source in self._sources():
            try:
                cached = self._cached()
                use_cache = isinstance(source, HttpSource) and cached is not None and \
                    cached.base in source.urls
                got = source.fetch(state.etag if use_cache else "", state.last_modified if use_cache else "")
            except SourceError as err:
                errors.append(err.message)
                continue
            if isinstance(got, NotModified):
                if cached is None:
                    errors.append("server said not modified but no catalog is cached")
                    continue
                got = cached
            cat = self._verify(got, state)
            if cached is None or cached.data != got.data or cached.base != got.base:
                atomic.write_bytes(self.catalog_dir / "catalog.json", got.data)
                atomic.write_bytes(self.catalog_dir / "catalog.json.sig", got.signature)
                atomic.write_text(self.catalog_dir / "source", got.base + "\n")
            if got.etag or got.last_modified:
                state = state.update(etag=got.etag, last_modified=got.last_modified)
            state = state.update(catalog_serial=max(cat.serial, state.catalog_serial or 0))
            return state, cat, got.repo_url
        raise AgentError("; ".join(errors) or "no release source answered")

    def preview(self) -> dict[str, Any]:
        """What ``check`` prints: fetch (unconditionally) and verify the catalog and say what would be
        applied. Changes nothing on disk, so it is safe next to a running service."""
        state = self.store.load()
        errors = []
        for source in self._sources():
            try:
                got = source.fetch()
            except SourceError as err:
                errors.append(err.message)
                continue
            if isinstance(got, NotModified):  # pragma: no cover - no conditional headers were sent
                continue
            cat = self._verify(got, state)
            booted = self.booted(fresh=False)
            position = rollout.position(self.machine_id(), self.cfg.rollout_wariness)
            picked = choose(cat, self.cfg.channel, booted.version if booted else None, now=self.now(),
                            position=position, denylist=state.denylist)
            return {"result": picked.reason, "version": picked.release.version if picked.release else None,
                    "commit": picked.release.commit if picked.release else None, "catalog_serial": cat.serial,
                    "source": got.base, "booted_version": booted.version if booted else None}
        raise AgentError("; ".join(errors) or "no release source answered")

    def _fetch_bundle(self, state: State) -> tuple[State, catalog_mod.Catalog, str]:
        """Verify an offline bundle's catalog and import its deltas into the system repo."""
        import tarfile

        from updater import bundle

        assert self.bundle_file is not None
        cat = bundle.apply_bundle(self.bundle_file, self.sysroot.repo, list(self.cfg.trusted_keys),
                                  last_serial=state.catalog_serial, now=self.now(), channel=self.cfg.channel)
        with tarfile.open(self.bundle_file, mode="r:*") as tar:
            parts = {}
            for name in (catalog_mod.CATALOG_NAME, catalog_mod.SIGNATURE_NAME):
                handle = tar.extractfile(name)
                if handle is None:
                    raise AgentError(f"bundle {self.bundle_file} has no {name}")
                parts[name] = handle.read(catalog_mod.MAX_CATALOG_BYTES + 1)
        atomic.write_bytes(self.catalog_dir / "catalog.json", parts[catalog_mod.CATALOG_NAME])
        atomic.write_bytes(self.catalog_dir / "catalog.json.sig", parts[catalog_mod.SIGNATURE_NAME])
        atomic.write_text(self.catalog_dir / "source", f"bundle:{self.bundle_file}\n")
        return state.update(catalog_serial=max(cat.serial, state.catalog_serial or 0)), cat, "bundle:"

    def verified_cached_catalog(self, state: State) -> catalog_mod.Catalog:
        """The cached catalog, verified again now (the binding every stage decision relies on)."""
        cached = self._cached()
        if cached is None:
            raise AgentError("no verified catalog is cached; run a check first")
        return self._verify(cached, state)

    # ------------------------------------------------------------------ steps

    def due(self, state: State) -> bool:
        retry = _parse_iso(state.retry_after)
        return retry is None or self.now() >= retry

    def check(self, state: State, *, select_target: bool = True) -> tuple[State, str]:
        """Fetch, verify, choose. With ``select_target`` an idle agent moves to ``selected``."""
        now = self.now()
        state = state.update(last_check=_iso(now))
        try:
            state, cat, repo = self.fetch_catalog(state)
            booted = self.booted(fresh=False)
            current = booted.version if booted else None
            position = rollout.position(self.machine_id(), self.cfg.rollout_wariness)
            picked = choose(cat, self.cfg.channel, current or None, now=now, position=position,
                            denylist=state.denylist)
        except UserError as err:
            self._say("check_failed", f"update check failed: {err.message}", priority="warning")
            state = state.update(last_check_result=f"failed: {err.message}")
            return self._fail(state, "check", err), state.last_check_result
        delay = schedule.poll_delay(self.cfg.poll_interval_seconds, self.cfg.poll_jitter_seconds, self.rng)
        stable = min(cat.expires, picked.next_change) if picked.next_change else cat.expires
        state = state.update(last_check_result=picked.reason, last_error="", failures=0,
                             retry_after=_iso(now + timedelta(seconds=delay)),
                             stable_until=_iso(stable) if picked.release is None and booted else "")
        if picked.release is not None and select_target and state.phase == IDLE and booted is not None:
            rel = picked.release
            target = Target(rel.version, rel.commit, self.cfg.channel, cat.serial)
            state = state.update(phase=SELECTED, target=target, from_deployment=booted.id,
                                 from_version=booted.version, staged_deployment="", snapshot="",
                                 progress={"repo": repo}, retry_after="")
            self._say("update_found", f"update {current} -> {rel.version} selected ({picked.reason})",
                      version=rel.version, commit=rel.commit)
        return self._save(state), picked.reason

    def _bound_release(self, state: State) -> catalog_mod.Release:
        """The target's release in the verified catalog: refuse anything not bound to it."""
        assert state.target is not None
        cat = self.verified_cached_catalog(state)
        rel = cat.channel(state.target.channel).find(commit=state.target.checksum)
        if rel is None:
            raise catalog_mod.UnknownRelease(f"release {state.target.version} is no longer in the verified catalog")
        if rel.withdrawn:
            raise catalog_mod.UnknownRelease(f"release {state.target.version} was withdrawn")
        catalog_mod.check_commit(rel, state.target.checksum)
        return rel

    def _abandon(self, state: State, why: str) -> State:
        self._say("step_failed", f"abandoning update to {state.target.version if state.target else '?'}: {why}",
                  priority="warning")
        return self._save(state.update(phase=IDLE, target=None, staged_deployment="", progress={},
                                       last_error=why, retry_after=""))

    def download(self, state: State, *, ignore_window: bool = False) -> State:
        assert state.target is not None
        tz = schedule.zone(self.cfg.time_zone)
        if not ignore_window and not schedule.in_window(self.cfg.download_windows, self.now(), tz):
            opening = schedule.next_opening(self.cfg.download_windows, self.now(), tz)
            return self._save(state.update(last_error="", progress={
                **state.progress, "waiting_for_window": _iso(opening) if opening else ""}))
        try:
            release = self._bound_release(state)
        except catalog_mod.CatalogError as err:
            return self._abandon(state, err.message)
        repo = str(state.progress.get("repo") or "")
        checksum = state.target.checksum
        started = self.now()
        self._save(state.update(progress={"repo": repo, "state": "downloading", "started": _iso(started)}))
        try:
            if not self.sysroot.has_commit(checksum):
                if repo.startswith("bundle:"):
                    raise AgentError(f"the offline bundle does not carry {state.target.version}; make one that does")
                if "://" in repo:
                    options = {"low-speed-limit-bytes": str(self.cfg.low_speed_limit_bytes),
                               "low-speed-time-seconds": str(self.cfg.low_speed_time_seconds)}
                    self.sysroot.set_remote(self.cfg.remote_name, repo, options)
                    summary = self._fetch_delta(state, release, repo, started) or \
                        self.sysroot.pull(self.cfg.remote_name, checksum, retries=self.cfg.pull_retries,
                                          low_speed_limit=self.cfg.low_speed_limit_bytes,
                                          low_speed_time=self.cfg.low_speed_time_seconds,
                                          progress=self._progress_writer(started))
                else:
                    summary = self.sysroot.pull_local(Path(repo), checksum)
            else:
                summary = "already present"
            if not self.sysroot.has_commit(checksum):
                raise AgentError(f"commit {checksum[:12]} is incomplete after the pull")
            version = self.sysroot.commit_version(checksum)
            if version and version != state.target.version:
                raise catalog_mod.CommitMismatch(f"commit {checksum[:12]} says version {version}, the catalog "
                                                 f"says {state.target.version}")
        except catalog_mod.CommitMismatch as err:
            return self._abandon(state, err.message)
        except UserError as err:
            self._say("download_failed", f"download of {state.target.version} failed: {err.message}",
                      priority="warning")
            return self._fail(state.update(progress={"repo": repo, "state": "retrying"}), "download", err)
        secs = (self.now() - started).total_seconds()
        self._say("download_done", f"downloaded {state.target.version} ({summary})", version=state.target.version)
        return self._save(state.update(phase=DOWNLOADED, failures=0, last_error="", retry_after="",
                                       progress={"repo": repo, "state": "done", "summary": summary,
                                                 "seconds": round(secs, 1)}))

    def _fetch_delta(self, state: State, release: catalog_mod.Release, repo_url: str, started: datetime) -> str:
        """Fetch the static delta from the booted commit ourselves, when the catalog lists one.

        libostree 2022.x pulls the new objects loose on top of the delta (ostreedev/ostree#2680) and
        restarts a broken delta part from zero; :mod:`updater.delta` moves exactly the delta's bytes and
        resumes a cut transfer with a ``Range`` request. Returns "" when there is no such delta (then
        ``ostree pull`` fetches whatever the summary offers).
        """
        from_commit = state.from_deployment.split(".", 1)[0] if state.from_deployment else ""
        if not from_commit or release.delta_from(from_commit) is None or not self.sysroot.has_commit(from_commit):
            return ""
        from updater import delta  # imported here: a device that is not downloading does not pay for it

        cache = self.cfg.paths.state_dir / "downloads"
        limits = delta.LinkLimits(timeout=float(self.cfg.http_timeout_seconds),
                                  low_speed_limit=self.cfg.low_speed_limit_bytes,
                                  low_speed_time=float(self.cfg.low_speed_time_seconds))
        result = delta.fetch_and_apply(repo_url, self.sysroot.repo, release, from_commit, cache_dir=cache,
                                       limits=limits, attempts=self.cfg.pull_retries + 1,
                                       progress=self._progress_writer(started))
        shutil.rmtree(cache, ignore_errors=True)  # leftovers of an abandoned target included
        return f"static delta of {result.delta_size} bytes, {result.bytes_fetched} fetched in this attempt"

    def _progress_writer(self, started: datetime) -> Callable[[int], None]:
        path = self.cfg.paths.state_dir / "progress.json"
        last = [0.0]

        def write(received: int) -> None:
            import time

            if time.monotonic() - last[0] >= 2.0:
                last[0] = time.monotonic()
                atomic.write_json(path, {"received_bytes": received, "started": _iso(started),
                                         "updated": _iso(self.now())})

        return write

    def protect(self, state: State) -> State:
        paths = self.data_paths()
        if not paths:
            return self._save(state.update(phase=PROTECTED, snapshot=""))
        snap_id = state.from_deployment
        try:
            self.snapshots.take(snap_id, paths, min_free_bytes=self.cfg.min_free_bytes)
        except UserError as err:
            return self._fail(state, "protect data", err)
        self._say("data_protected", f"snapshot {snap_id[:12]} of {', '.join(map(str, paths))} taken",
                  snapshot=snap_id)
        return self._save(state.update(phase=PROTECTED, snapshot=snap_id, failures=0, last_error=""))

    def arm(self, state: State) -> State:
        from greenboot import bootcount

        try:
            bootcount.arm(self.grubenv, self.boot_attempts())
        except UserError as err:
            return self._fail(state, "arm boot counter", err)
        return self._save(state.update(phase=ARMED))

    def _target_deployment(self, state: State) -> Deployment | None:
        assert state.target is not None
        for d in self.sysroot.deployments():
            if d.checksum == state.target.checksum:
                return d
        return None

    def stage(self, state: State) -> State:
        assert state.target is not None
        try:
            self._bound_release(state)
        except catalog_mod.CatalogError as err:
            return self._abandon(state, err.message)
        try:
            existing = self._target_deployment(state)
            if existing is None and not self.sysroot.has_commit(state.target.checksum):
                # Pulled once, gone now (a lost staged deployment whose commit a cleanup pruned, a
                # repair): deploying would fail the same way forever, so download it again.
                self._say("step_failed", f"{state.target.version} ({state.target.checksum[:12]}) is no longer "
                          "in the system repo; downloading it again", priority="warning")
                return self._save(state.update(phase=SELECTED, retry_after="", last_error="", failures=0))
            if existing is None or existing.index != 0:
                booted = self.booted()
                self.backend.stage(self.osname(booted), state.target.checksum)
                existing = self._target_deployment(state)
            if existing is None:
                raise AgentError(f"deployment of {state.target.checksum[:12]} did not appear after staging")
            self.backend.arm_finalizer()
        except UserError as err:
            return self._fail(state, "stage", err)
        self._say("staged", f"{state.target.version} staged as the next boot ({self.backend.name})",
                  version=state.target.version, deployment=existing.id)
        return self._save(state.update(phase=STAGED, staged_deployment=existing.id, failures=0, last_error=""))

    def recheck_staged(self, state: State) -> State:
        """While a staged update waits for its reboot, keep polling the catalog at the usual interval:
        a release withdrawn (or dropped) in the meantime is unstaged and never booted. A catalog that
        cannot be fetched or is refused changes nothing (the staged update stays)."""
        assert state.target is not None
        if not self.due(state):
            return state
        now = self.now()
        delay = schedule.poll_delay(self.cfg.poll_interval_seconds, self.cfg.poll_jitter_seconds, self.rng)
        try:
            state, _cat, _repo = self.fetch_catalog(state.update(last_check=_iso(now)))
            self._bound_release(state)
        except catalog_mod.UnknownRelease as err:
            target = self._target_deployment(state)
            booted = self.booted()
            if target is not None and (booted is None or target.id != booted.id):
                self.backend.discard(target)
            from greenboot import bootcount

            bootcount.disarm(self.grubenv)
            return self._abandon(state, f"staged update unstaged: {err.message}")
        except UserError as err:
            return self._save(state.update(last_check_result=f"failed: {err.message}",
                                           retry_after=_iso(now + timedelta(seconds=delay))))
        return self._save(state.update(last_check_result="staged release still current",
                                       retry_after=_iso(now + timedelta(seconds=delay))))

    # ------------------------------------------------------------------ reboot policy

    def reboot_allowed(self, state: State, *, force: bool = False) -> tuple[bool, str]:
        """Whether the policy lets the device reboot now, and why (or why not)."""
        if state.phase in IN_FLIGHT:
            return False, f"not rebooting while {state.phase} work is in flight"
        if force:
            return True, "reboot requested"
        strategy = self.cfg.reboot_strategy
        if strategy == "immediate":
            return True, "strategy immediate"
        if strategy == "manual":
            return False, "waiting for `fieldshift-agent reboot` (strategy manual)"
        if strategy == "window":
            tz = schedule.zone(self.cfg.time_zone)
            if schedule.in_window(self.cfg.reboot_windows, self.now(), tz):
                return True, "inside a reboot window"
            opening = schedule.next_opening(self.cfg.reboot_windows, self.now(), tz)
            return False, f"waiting for the next reboot window at {_iso(opening) if opening else '?'}"
        return True, "strategy fleet_lock"

    def next_reboot_slot(self, state: State) -> str:
        if self.cfg.reboot_strategy == "window":
            opening = schedule.next_opening(self.cfg.reboot_windows, self.now(), schedule.zone(self.cfg.time_zone))
            return _iso(opening) if opening else ""
        return {"immediate": "as soon as staged", "manual": "when requested",
                "fleet_lock": "when the lock server grants a slot"}[self.cfg.reboot_strategy]

    def fleet_lock(self) -> FleetLock:
        return FleetLock(self.cfg.fleet_lock_url, self.node_id(), self.cfg.fleet_lock_group,
                         timeout=float(self.cfg.http_timeout_seconds))

    def maybe_reboot(self, state: State, *, force: bool = False) -> State:
        assert state.target is not None
        version = state.target.version
        allowed, why = self.reboot_allowed(state, force=force)
        if not allowed:
            if state.last_error != why:
                self._say("reboot_deferred", why)
            return self._save(state.update(last_error=why))
        target = self._target_deployment(state)
        if target is None or (target.index != 0 and not target.staged):
            # The staged deployment vanished (e.g. a staged deploy lost to a power cut): stage again.
            return self._save(self._stage_again(state))
        if self.cfg.reboot_strategy == "fleet_lock" and not force:
            try:
                self.fleet_lock().lock(self.http)
            except UserError as err:
                return self._fail(state, "fleet lock", err)
            state = self._save(state.update(fleet_lock_held=True))
        from greenboot import bootcount

        try:
            # Re-arm right before the reboot: a green boot of the old deployment in between clears it.
            bootcount.arm(self.grubenv, self.boot_attempts())
        except UserError as err:
            return self._fail(state, "arm boot counter", err)
        state = self._save(state.update(phase=REBOOTING, last_error="", reboot_boot_id=self.boot_id(),
                                        retry_after=_iso(self.now() + timedelta(seconds=REBOOT_GRACE_SECONDS))))
        self._say("reboot", f"rebooting into {version} ({why})", version=version)
        try:
            assert self.reboot_fn is not None
            self.reboot_fn()
        except UserError as err:
            return self._fail(state.update(phase=STAGED), "reboot", err)
        return state

    # ------------------------------------------------------------------ after a boot

    def reconcile(self) -> State:
        """Early-boot step: confirm, or make a fallback permanent and restore data (before services)."""
        state = self.store.load()
        if not reconcile_needed(state) or state.target is None:  # (the second half for the type checker)
            return state
        booted = self.booted()
        if booted is None:
            return self._save(state.update(last_error="cannot tell which deployment is booted"))
        checksum = state.target.checksum
        if state.phase == REBOOTING and state.reboot_boot_id and state.reboot_boot_id == self.boot_id():
            # Still the boot that asked for the reboot: it has not happened (yet).
            return state
        if state.phase == REBOOTING and state.retry_after:
            state = self._save(state.update(retry_after=""))  # the reboot happened: its grace period is over
        if booted.checksum == checksum:
            if state.phase != CONFIRMING:
                state = self._save(state.update(phase=CONFIRMING, last_error=""))
            if state.restore_snapshot:
                # A manual rollback: put back the data of the deployment we returned to, before services.
                if self.snapshots.exists(state.restore_snapshot):
                    restored = self.snapshots.restore(state.restore_snapshot)
                    self._say("data_restored", f"restored {', '.join(restored)} from snapshot "
                              f"{state.restore_snapshot[:12]}", snapshot=state.restore_snapshot)
                state = self._save(state.update(restore_snapshot=""))
            return self.confirm(state)
        from greenboot import bootcount

        target = self._target_deployment(state)
        if state.phase in (REBOOTING, CONFIRMING):
            fell_back = (
                (target is not None and target.index == 0 and booted.index > 0)
                or bootcount.read(self.grubenv).fallback
                or state.progress.get("rollback") in ("started", "restored")
                or self._greenboot_gave_up(checksum)
                # a non-staged deployment only vanishes when greenboot made the fallback permanent
                or (target is None and not getattr(self.backend, "staged", True))
            )
            if fell_back:
                return self.rollback_after_fallback(state, booted, target)
        if target is None:
            # A staged deployment never finalized (power cut before shutdown): stage it again.
            self._say("step_failed", "the staged deployment did not survive the last boot; staging again",
                      priority="warning")
            return self._save(self._stage_again(state))
        return state

    @staticmethod
    def _stage_again(state: State) -> State:
        """Back to ``protected`` (data already safe, stage next) when the staged deployment was lost.

        ``retry_after`` held the staged phase's next catalog recheck (a poll interval away); left in
        place it would hold the staging back until then, so it goes: the next step stages at once.
        """
        return state.update(phase=PROTECTED, staged_deployment="", retry_after="", last_error="")

    def confirm(self, state: State) -> State:
        from greenboot import bootcount

        assert state.target is not None
        version = state.target.version
        count = bootcount.read(self.grubenv)
        if count.success != "1" or count.armed:
            return self._save(state.update(last_error="waiting for greenboot to declare this boot healthy"))
        if state.fleet_lock_held:
            try:
                self.fleet_lock().unlock(self.http)
                state = state.update(fleet_lock_held=False)
            except UserError as err:
                self._say("step_failed", f"fleet lock release failed (will retry): {err.message}",
                          priority="warning")
        keep = [state.snapshot] if state.snapshot else []
        self.snapshots.drop_except(keep)
        operator = state.progress.get("kind") == "operator-rollback"
        result = {"result": "success", "version": version, "from_version": state.from_version,
                  "time": _iso(self.now()), **({"operator_rollback": True} if operator else {})}
        what = "operator rollback to" if operator else "update to"
        self._say("update_succeeded", f"{what} {version} succeeded", version=version)
        return self._save(state.update(phase=IDLE, target=None, staged_deployment="", progress={}, last_error="",
                                       failures=0, retry_after="", last_result=result))

    def _greenboot_report(self) -> dict[str, Any]:
        """greenboot's rollback record (which checks failed), else its latest boot report."""
        from greenboot import report

        root = self.cfg.paths.greenboot_root
        rec = report.last_rollback(root)
        if rec is not None:
            return {"rollback": rec.to_json()}
        latest_red = [r for r in report.reports(root) if r.verdict == "red"]
        if latest_red:
            return {"boot": latest_red[-1].to_json()}
        return {}

    def _greenboot_gave_up(self, checksum: str) -> bool:
        """True when greenboot recorded (in rollback.json) that it gave up on ``checksum``."""
        from greenboot import report

        rec = report.last_rollback(self.cfg.paths.greenboot_root)
        return rec is not None and checksum in json.dumps(rec.failed or {})

    def rollback_after_fallback(self, state: State, booted: Deployment, target: Deployment | None) -> State:
        """GRUB fell back: restore data, drop the failed deployment, denylist the release."""
        assert state.target is not None
        version = state.target.version
        denylist = tuple(dict.fromkeys([*state.denylist, state.target.checksum]))
        if state.progress.get("rollback") not in ("started", "restored"):
            state = self._save(state.update(phase=CONFIRMING, denylist=denylist, progress={"rollback": "started"}))
        if state.progress.get("rollback") == "started":
            if state.snapshot and self.snapshots.exists(state.snapshot) and booted.id == state.from_deployment:
                restored = self.snapshots.restore(state.snapshot)
                self._say("data_restored", f"restored {', '.join(restored)} from snapshot {state.snapshot[:12]}",
                          snapshot=state.snapshot)
            state = self._save(state.update(progress={"rollback": "restored"}))
        if target is not None:
            self.backend.discard(target)
        from greenboot import bootcount

        bootcount.clear_counter(self.grubenv)
        report = self._greenboot_report()
        result = {"result": "rolled_back", "version": version, "from_version": state.from_version,
                  "time": _iso(self.now()), "greenboot": report}
        self._say("rolled_back", f"update to {version} failed its boot checks; back on "
                  f"{booted.version or booted.id[:12]}, release denylisted on this device", priority="err",
                  version=version)
        return self._save(state.update(phase=IDLE, target=None, staged_deployment="", progress={},
                                       last_result=result, last_error="", retry_after=""))

    # ------------------------------------------------------------------ driving

    def advance(self, *, force: bool = False, reboot_now: bool = False, max_steps: int = 12) -> State:
        """Run steps until one must wait. ``force`` ignores the poll timer and download window."""
        state = self.store.load()
        if self.cfg.report_url:
            self.events.flush(self.http)
        for _ in range(max_steps):
            before = (state.phase, state.failures)
            if not force and not self.due(state) and state.phase not in (STAGED, CONFIRMING):
                return state
            if state.phase == IDLE:
                if state.fleet_lock_held:
                    try:
                        self.fleet_lock().unlock(self.http)
                        state = self._save(state.update(fleet_lock_held=False))
                    except UserError as err:
                        return self._fail(state, "fleet lock release", err)
                state, _ = self.check(state)
                if state.phase == IDLE:
                    return state
                continue
            if state.phase == SELECTED:
                state = self.download(state, ignore_window=force)
            elif state.phase == DOWNLOADED:
                state = self.protect(state)
            elif state.phase == PROTECTED:
                state = self.arm(state)
            elif state.phase == ARMED:
                state = self.stage(state)
            elif state.phase == STAGED:
                state = self.recheck_staged(state)
                if state.phase != STAGED:
                    return state
                return self.maybe_reboot(state, force=reboot_now)
            elif state.phase == REBOOTING:
                if state.reboot_boot_id != self.boot_id() or not self.due(state):
                    return state  # the reboot is under way (or reconcile has not run yet this boot)
                # Still the boot that asked, long after: the reboot was lost. Ask again, by policy.
                self._say("step_failed", f"no reboot {REBOOT_GRACE_SECONDS} s after asking for it; "
                          "asking again", priority="warning")
                state = self._save(state.update(phase=STAGED, reboot_boot_id="", retry_after="",
                                                last_error="the reboot did not happen"))
                continue
            elif state.phase == CONFIRMING:
                return self.reconcile()
            if (state.phase, state.failures) == before or state.failures > before[1]:
                return state
        return state

    def rollback(self) -> State:
        """``fieldshift-agent rollback``: cancel a pending update, or go back to the previous deployment.

        Going back re-uses a deployment this device already ran (no new content is staged): it becomes
        the next boot, the release being left is denylisted, the data snapshot taken before it is
        restored early in the next boot, and the reboot happens now.
        """
        state = self.store.load()
        booted = self.booted()
        if state.target is not None and state.phase != CONFIRMING and \
                (booted is None or booted.checksum != state.target.checksum):
            return self.cancel()
        deployments = self.sysroot.deployments()
        if booted is None or booted.index != 0 or len(deployments) < 2:
            raise AgentError("there is no previous deployment to roll back to")
        previous = deployments[1]
        self.backend.rollback_to(previous, self.osname(booted))
        staged = next((d for d in self.sysroot.deployments() if d.checksum == previous.checksum and d.index == 0),
                      None)
        if staged is None:
            raise AgentError(f"rolling back did not make {previous.version or previous.id[:12]} the next boot")
        restore = state.snapshot if state.snapshot and state.snapshot.split(".")[0] == previous.checksum else ""
        target = Target(previous.version, previous.checksum, self.cfg.channel, state.catalog_serial or 0)
        self._say("rolled_back", f"operator rollback from {booted.version} to {previous.version}; "
                  f"{booted.version} denylisted on this device", priority="warning", version=booted.version)
        state = self._save(state.update(
            phase=STAGED, target=target, from_deployment=booted.id, from_version=booted.version,
            staged_deployment=staged.id, snapshot="", restore_snapshot=restore, progress={"kind": "operator-rollback"},
            denylist=tuple(dict.fromkeys([*state.denylist, booted.checksum])), last_error="",
            last_result={"result": "rollback_requested", "from_version": booted.version,
                         "version": previous.version, "time": _iso(self.now())}))
        return self.maybe_reboot(state, force=True)

    def cancel(self) -> State:
        """``rollback`` before the reboot: drop the staged deployment and denylist the release."""
        state = self.store.load()
        if state.target is None:
            raise AgentError("no update in progress to roll back; the booted deployment is the only candidate")
        target = self._target_deployment(state)
        booted = self.booted()
        if target is not None and (booted is None or booted.checksum != target.checksum):
            self.backend.discard(target)
            from greenboot import bootcount

            bootcount.disarm(self.grubenv)
        result = {"result": "cancelled", "version": state.target.version, "time": _iso(self.now())}
        self._say("rolled_back", f"update to {state.target.version} cancelled by the operator",
                  version=state.target.version)
        return self._save(state.update(phase=IDLE, target=None, staged_deployment="", progress={},
                                       denylist=tuple(dict.fromkeys([*state.denylist, state.target.checksum])),
                                       last_result=result, last_error=""))

    def _live_progress(self, state: State) -> dict[str, Any]:
        if state.progress.get("state") != "downloading":
            return {}
        try:
            return dict(json.loads((self.cfg.paths.state_dir / "progress.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}

    def status(self) -> dict[str, Any]:
        """Everything `fieldshift-agent status` shows."""
        state = self.store.load()
        try:
            deployments = self.sysroot.deployments()
            booted = self.booted()
        except UserError as err:
            deployments, booted = [], None
            state = state.update(last_error=err.message)
        pending = next((d for d in deployments if d.index == 0 and (booted is None or d.id != booted.id)), None)
        return {
            "phase": state.phase,
            "channel": self.cfg.channel,
            "booted": {"deployment": booted.id, "version": booted.version} if booted else None,
            "pending": {"deployment": pending.id, "version": pending.version} if pending else None,
            "deployments": [{"index": d.index, "deployment": d.id, "version": d.version, "flags": list(d.flags)}
                            for d in deployments],
            "target": state.target.__dict__ if state.target else None,
            "last_check": state.last_check,
            "last_check_result": state.last_check_result,
            "catalog_serial": state.catalog_serial,
            "download": {**state.progress, **self._live_progress(state)},
            "reboot_strategy": self.cfg.reboot_strategy,
            "backend": self.cfg.backend,
            "next_reboot_slot": self.next_reboot_slot(state) if state.target else "",
            "retry_after": state.retry_after,
            "failures": state.failures,
            "last_error": state.last_error,
            "last_result": state.last_result,
            "denylist": list(state.denylist),
            "events_queued": self.events.pending(),
        }
