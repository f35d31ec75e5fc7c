"""The compose pipeline: blueprint -> depsolve -> (cached) install -> customization stages -> ostree prep -> commit.

``build(request, progress)`` runs it and returns a :class:`BuildResult`. Depsolve comes first, so a
missing package fails in about a second naming its blueprint entry. The input hash covers the
rendered blueprint, the exact package set (with package checksums), every file the blueprint
references, the distro, ref and the builder's own stage code; when the ref's current commit carries
the same ``rpmostree.inputhash`` nothing is rebuilt (rpm-ostree's "No apparent changes"). The
installed tree is cached by package-set digest, so a customization-only change skips dnf entirely.
On any error the work tree is removed (``keep_tree`` keeps it) and the ref is untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from builder import backends, distro, ostree
from builder.backends import PackageRequest, PackageSet, PackageSpec, RepositoryError
from builder.blueprint import Blueprint, load
from builder.cache import TreeCache, sweep, write_entry
from builder.outputs import CommitOutput, write_outputs
from builder.stages import (
    commit,
    containers,
    files,
    firewall,
    hostname,
    kernel,
    locale,
    microshift,
    ostree_prep,
    passwd_preserve,
    repositories,
    services,
    sysusers,
    timezone,
    users,
)
from builder.stages import fieldshift as fieldshift_stage
from greenboot.errors import UserError

log = logging.getLogger("fieldshift.compose")
Progress = Callable[[str], None]
STAGE_SOURCES = Path(__file__).resolve().parent
DBPATHS = {"fedora-41": "/usr/lib/sysimage/rpm"}
# Stateroot names image-builder's installers use (osbuild/images edge-installer / iot-installer).
OSNAMES = {"rhel": "rhel-edge", "centos": "centos", "fedora": "fedora-iot"}
# Where image-builder's installer ISOs carry the commit's repo.
INSTALLER_REPO_URL = "file:///run/install/repo/ostree/repo"


class ComposeError(UserError):
    """The build cannot go on (bad arguments, an unusable ostree repo, disk full …)."""


@dataclass(frozen=True)
class BuildRequest:
    """Arguments of ``fieldshift build``."""

    blueprint: Path
    repos: tuple[Path, ...]
    ostree_repo: Path
    ref: str | None = None
    parent: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    output: Path | None = None
    keep_tree: bool = False
    cache_dir: Path | None = None
    source_date_epoch: int | None = None
    image_type: str | None = None
    # Where the device payload (the greenboot and updater packages) is copied from: this checkout by default.
    payload_source: Path | None = None


@dataclass(frozen=True)
class BuildResult:
    """What a build produced (``reused``: the ref already had a commit with the same input hash)."""

    ref: str
    commit: str
    parent: str | None
    version: str
    inputhash: str
    content_checksum: str
    reused: bool
    tree_cache_hit: bool
    packages: tuple[str, ...]
    kernel: str
    outputs: tuple[str, ...] = ()
    kept_tree: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["package_count"] = len(self.packages)
        return d


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fieldshift/compose`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fieldshift" / "compose"


def repo_files(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    """``--repos`` arguments expanded: a ``.repo`` file, or every ``*.repo`` in a directory."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.repo"))
            if not found:
                raise RepositoryError(f"--repos {p}: the directory has no *.repo files")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise RepositoryError(f"--repos {p}: no such file or directory")
    return tuple(out)


def package_specs(bp: Blueprint, d: distro.Distro) -> tuple[PackageSpec, ...]:
    """Distro base packages, then the blueprint's packages, modules and groups, each naming its origin."""
    kernel_name = bp.customizations.kernel.name if bp.customizations.kernel else d.kernel_package
    base = [kernel_name if n == d.kernel_package else n for n in d.base_packages]
    specs = [PackageSpec(n, f'distro {d.name} base package "{n}"') for n in base]
    specs += [PackageSpec(p.spec, f'packages[{i}] "{p.spec}"') for i, p in enumerate(bp.packages)]
    specs += [PackageSpec(m.spec, f'modules[{i}] "{m.spec}"') for i, m in enumerate(bp.modules)]
    specs += [PackageSpec(f"@{g.name}", f'groups[{i}] "{g.name}"') for i, g in enumerate(bp.groups)]
    seen: set[str] = set()
    unique = []
    for s in specs:
        if s.spec not in seen:
            seen.add(s.spec)
            unique.append(s)
    return tuple(unique)


def _blueprint_repo_files(bp: Blueprint, cache: Path) -> tuple[Path, ...]:
    """The blueprint's ``install_from`` repositories as .repo files (content-named, so stable)."""
    wanted = [r for r in bp.customizations.repositories if r.install_from]
    if not wanted:
        return ()
    text = "\n".join(repositories.repo_text(r) for r in wanted)
    path = cache / "blueprint-repos" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.repo"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(text)
    return (path,)


def _digest_path(h: Any, path: Path) -> None:
    if path.is_file():
        h.update(path.read_bytes())
    elif path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(path)).encode() + b"\0" + p.read_bytes())


def _code_files(backend: str) -> list[Path]:
    """The builder code that shapes a commit of this backend: pipeline, ostree wrapper, the stages it runs."""
    from builder.stages import accounts

    modules = [commit, containers, files, firewall, hostname, kernel, locale, microshift, ostree_prep,
               passwd_preserve, repositories, services, sysusers, timezone, users, fieldshift_stage, accounts]
    paths = [STAGE_SOURCES / "compose.py", STAGE_SOURCES / "ostree.py", STAGE_SOURCES / "stages" / "__init__.py"]
    paths += [Path(str(m.__file__)) for m in modules]
    if backend == "apt":
        paths.append(STAGE_SOURCES / "stages" / "debian_boot.py")
    return sorted(paths)


def input_hash(bp: Blueprint, pkgset: PackageSet, ref: str, extra: Mapping[str, str],
               payload: Path = fieldshift_stage.PROJECT) -> str:
    """sha256 over everything that decides the commit's content (see the module docstring)."""
    h = hashlib.sha256()
    h.update(json.dumps({"blueprint": bp.source_digest, "packages": pkgset.digest, "ref": ref, **extra},
                        sort_keys=True).encode())
    base = bp.source_path.resolve().parent if bp.source_path else Path(".")
    referenced = [base / f.uri.removeprefix("file://") for f in bp.customizations.files if f.uri]
    referenced += list(bp.fieldshift.trusted_keys) + list(bp.fieldshift.microshift.manifests)
    referenced += [base / c.source.split(":", 2)[1] for c in bp.containers if ":" in c.source]
    for path in referenced:
        h.update(str(path).encode())
        _digest_path(h, path)
    for src in _code_files(extra.get("backend", "dnf")):
        _digest_path(h, src)
    if bp.fieldshift.install_agent or bp.fieldshift.install_greenboot:
        _digest_path(h, payload / "greenboot")
    if bp.fieldshift.install_agent:
        _digest_path(h, payload / "updater")
    return h.hexdigest()


def _tree_accounts(tree: Path) -> dict[str, list[str]]:
    """passwd and group lines of a prepared tree (``/usr/etc`` then ``/usr/lib``), as the parent check reads them."""
    out: dict[str, list[str]] = {"passwd": [], "group": []}
    for name, lines in out.items():
        for path in (tree / "usr/etc" / name, tree / "usr/lib" / name):
            if path.is_file():
                lines += [x for x in path.read_text().splitlines() if x.strip()]
    return out


def _parent_accounts(repo: Path, parent: str | None, cache_dir: Path) -> passwd_preserve.PasswdPreserveOptions:
    if parent is None:
        return passwd_preserve.PasswdPreserveOptions()
    record = _commit_record(repo, parent, cache_dir)
    if record is not None and "passwd" in record:
        return passwd_preserve.PasswdPreserveOptions(tuple(record["passwd"]), tuple(record["group"]))
    lines: dict[str, list[str]] = {"passwd": [], "group": []}
    for name in lines:
        for path in (f"/usr/etc/{name}", f"/usr/lib/{name}"):
            if ostree.exists(repo, parent, path):
                lines[name] += [x for x in ostree.cat(repo, parent, path).splitlines() if x.strip()]
    return passwd_preserve.PasswdPreserveOptions(tuple(lines["passwd"]), tuple(lines["group"]))


def customize(tree: Path, bp: Blueprint, parent_accounts: passwd_preserve.PasswdPreserveOptions,
              progress: Progress, timestamp: int | None = None,
              payload: Path = fieldshift_stage.PROJECT) -> tuple[str, ...]:
    """Apply every customization stage to ``tree`` in order; returns the kernel arguments."""
    c = bp.customizations
    base = bp.source_path.resolve().parent if bp.source_path else Path(".")
    progress("applying customizations")
    passwd_preserve.apply(tree, parent_accounts)
    sysusers.apply(tree, sysusers.SysusersOptions(source_date_epoch=timestamp))
    users.apply(tree, users.UsersOptions(users=c.users, groups=c.group))
    hostname.apply(tree, hostname.HostnameOptions(c.hostname))
    if c.timezone:
        timezone.apply(tree, timezone.TimezoneOptions(c.timezone.timezone, c.timezone.ntpservers))
    if c.locale:
        locale.apply(tree, locale.LocaleOptions(c.locale.languages, c.locale.keyboard))
    repositories.apply(tree, repositories.RepositoriesOptions(c.repositories))
    files.apply(tree, files.FilesOptions(c.directories, c.files, base))
    firewall.apply(tree, firewall.FirewallOptions(c.firewall))
    kargs = kernel.apply(tree, kernel.KernelOptions(c.kernel.append if c.kernel else ""))
    containers.apply(tree, containers.ContainersOptions(bp.containers, base))
    fs = bp.fieldshift
    microshift.apply(tree, microshift.MicroshiftOptions(dict(fs.microshift.config), fs.microshift.manifests))
    units = fieldshift_stage.apply(tree, fieldshift_stage.FieldshiftOptions(
        channel=fs.channel, release_url=fs.release_url, trusted_keys=fs.trusted_keys,
        install_agent=fs.install_agent, install_greenboot=fs.install_greenboot, agent=dict(fs.agent),
        max_boot_attempts=fs.greenboot.max_boot_attempts,
        disabled_healthchecks=fs.greenboot.disabled_healthchecks,
        watchdog_check_enabled=fs.greenboot.watchdog_check_enabled,
        watchdog_grace_period=fs.greenboot.watchdog_grace_period, payload_source=payload,
    ))
    services.apply(tree, services.ServicesOptions(c.services, units))
    return kargs


class _Clock:
    def __init__(self, progress: Progress) -> None:
        self.start = time.monotonic()
        self.progress = progress

    def __call__(self, line: str) -> None:
        self.progress(f"[{time.monotonic() - self.start:6.1f}s] {line}")


def _check_space(path: Path, err: OSError) -> UserError:
    if err.errno == 28:
        return ComposeError(f"no space left on the device holding {path}; free some space or use --cache-dir")
    return ComposeError(f"{path}: {err.strerror or err}")


def resolve(bp: Blueprint, repos: tuple[Path, ...], cache: Path,
            backend: backends.Backend | None = None) -> tuple[distro.Distro, PackageSet]:
    """Depsolve a blueprint against the given repositories (shared by build, depsolve and freeze).

    Passing ``backend`` asks it to stay warm for an install of the result (``PackageRequest.prefetch``);
    the caller then closes it.
    """
    d = distro.get(bp.distro, bp.architecture)
    request = PackageRequest(
        specs=package_specs(bp, d),
        repo_files=repo_files(repos) + _blueprint_repo_files(bp, cache),
        distro=d.name, releasever=d.releasever, arch=d.architecture, cache_dir=cache,
        dbpath=DBPATHS.get(d.name, "/var/lib/rpm"), prefetch=backend is not None,
    )
    return d, (backend or backends.get(d.backend)).resolve(request)


def _close(backend: object) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        close()


def build(request: BuildRequest, progress: Progress = lambda _line: None) -> BuildResult:
    """Run the whole pipeline (see the module docstring)."""
    started = time.monotonic()
    say = _Clock(progress)
    cache_dir = request.cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    sweep(cache_dir)
    bp = load(request.blueprint, dict(request.variables), request.image_type, reproducible=True)
    say(f"blueprint {bp.name} {bp.version} ({bp.distro}, {bp.architecture})")
    if request.image_type in ("raw", "qcow2") and request.output is None:
        raise ComposeError(f"--image-type {request.image_type} writes a disk image: pass --output DIR")
    say("resolving packages")
    # One backend for resolve and install: after a fresh depsolve it stays warm for the install.
    backend = backends.get(distro.get(bp.distro, bp.architecture).backend)
    d, pkgset = resolve(bp, request.repos, cache_dir, backend)
    say(f"resolved {len(pkgset.packages)} packages")
    ref = request.ref or bp.fieldshift.ref or d.ostree_ref
    repo = request.ostree_repo
    ostree.ensure_repo(repo)
    head = _head(repo, ref)
    if request.parent:
        parent = ostree.rev_parse(repo, request.parent)
        if parent is None:
            raise ComposeError(f'--parent "{request.parent}" is neither a ref nor a commit in {repo}')
    else:
        parent = head
    payload = request.payload_source or fieldshift_stage.PROJECT
    inputhash = input_hash(bp, pkgset, ref, {"distro": d.name, "arch": d.architecture, "backend": d.backend},
                           payload)
    names = tuple(p.nevra for p in pkgset.packages)
    record = _commit_record(repo, head, cache_dir) if head else None
    if record is not None and record["inputhash"] == inputhash and (
            request.parent is None or parent == record["parent"]):
        say(f"no changes: {ref} is already at {str(head)[:12]}")
        outputs = _outputs(request, repo, ref, str(head), inputhash, bp, d, say)
        return BuildResult(ref, str(head), record["parent"], bp.version, inputhash, record["content_checksum"],
                           True, True, names, record["kernel"], outputs, seconds=time.monotonic() - started)
    tree_cache = TreeCache(cache_dir)
    hit = tree_cache.get(pkgset.digest) is not None
    try:
        if not hit:
            say(f"installing {len(pkgset.packages)} packages")
            tree_cache.populate(pkgset.digest, lambda root: backend.install(pkgset, root, say))
        else:
            say("installed tree found in the cache")
        work = Path(tempfile.mkdtemp(prefix="build-", dir=cache_dir))
    except OSError as err:
        raise _check_space(cache_dir, err) from err
    finally:
        _close(backend)
    tree = work / "tree"
    kept = None
    # The base commit of the cached tree's /usr only reads the cache entry: write it while the stages run.
    pending = None if request.keep_tree else commit.start_base(repo, tree_cache.path(pkgset.digest),
                                                               cache_dir / "bases")
    try:
        tree_cache.copy_to(pkgset.digest, tree)
        timestamp = request.source_date_epoch
        if timestamp is None:
            timestamp = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
        kargs = customize(tree, bp, _parent_accounts(repo, parent, cache_dir), say, timestamp, payload)
        say("preparing the ostree layout")
        if d.backend == "apt":  # Debian GRUB has no blscfg: menu program for ostree (builder/stages/debian_boot.py)
            from builder.stages import debian_boot

            debian_boot.apply(tree)
        kver = ostree_prep.apply(tree, _prep_options(d))
        say(f"committing to {ref}")
        accounts = _tree_accounts(tree)
        checksum = commit.apply(tree, commit.CommitOptions(
            repo=repo, ref=ref, subject=f"{bp.name} {bp.version}", version=bp.version, inputhash=inputhash,
            blueprint_digest=bp.source_digest, kernel_version=kver, timestamp=timestamp, parent=parent,
            kargs=kargs,  # no --consume: measured 10x slower than committing and removing the tree after
            # Incremental commit over the untouched /usr of the cached tree (a kept tree stays whole).
            base_tree=None if request.keep_tree else tree_cache.get(pkgset.digest), base_records=cache_dir / "bases",
            pending_base=pending,
        ), pkgset)
        if request.keep_tree:
            kept = str(tree)
    except OSError as err:
        raise _check_space(work, err) from err
    except BaseException:
        if request.keep_tree:
            log.warning("build failed; the work tree is kept at %s", tree)
        raise
    finally:
        if pending is not None:
            pending.cancel()
        if not request.keep_tree:
            shutil.rmtree(work, ignore_errors=True)
    content = ostree.content_checksum(repo, checksum)
    _save_commit_record(cache_dir, checksum, {"inputhash": inputhash, "parent": parent, "kernel": kver,
                                              "content_checksum": content, **accounts})
    say(f"committed {checksum[:12]} on {ref}")
    outputs = _outputs(request, repo, ref, checksum, inputhash, bp, d, say)
    return BuildResult(ref, checksum, parent, bp.version, inputhash, content, False, hit, names,
                       kver, outputs, kept, time.monotonic() - started)


def _prep_options(d: distro.Distro) -> ostree_prep.OstreePrepOptions:
    if d.backend == "apt":
        return ostree_prep.OstreePrepOptions("/var/lib/dpkg", package_format="deb")
    return ostree_prep.OstreePrepOptions(DBPATHS.get(d.name, "/var/lib/rpm"))


def _head(repo: Path, ref: str) -> str | None:
    """The ref's commit: read from ``refs/heads`` directly (the common case), else via ``ostree rev-parse``."""
    path = repo / "refs" / "heads" / ref
    if path.is_file():
        return path.read_text().strip()
    if ":" not in ref and not (repo / "refs" / "mirrors").is_dir():
        return None  # a local ref lives only in refs/heads
    return ostree.rev_parse(repo, ref)


def _save_commit_record(cache_dir: Path, checksum: str, record: dict[str, Any]) -> None:
    write_entry(cache_dir / "commits" / f"{checksum}.json", record)


def _commit_record(repo: Path, checksum: str, cache_dir: Path) -> dict[str, Any] | None:
    """What the no-op check needs to know about a commit.

    A commit object is immutable (its checksum covers its metadata), so facts recorded when we made it
    stay true while the object exists; commits made elsewhere are read with ``ostree``.
    """
    saved = cache_dir / "commits" / f"{checksum}.json"
    if saved.exists() and (repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").exists():
        record: dict[str, Any] = json.loads(saved.read_text())
        return record
    inputhash = ostree.metadata_value(repo, checksum, "rpmostree.inputhash")
    if inputhash is None:
        return None
    info = ostree.show(repo, checksum)
    return {"inputhash": inputhash, "parent": info.parent, "content_checksum": info.content_checksum,
            "kernel": str(ostree.metadata_value(repo, checksum, "ostree.linux") or "")}


def _outputs(request: BuildRequest, repo: Path, ref: str, checksum: str, inputhash: str, bp: Blueprint,
             d: distro.Distro, say: Progress) -> tuple[str, ...]:
    if request.output is None:
        return ()
    if request.image_type in ("raw", "qcow2"):  # bootable disk: builder/image.py
        from builder import image
        from builder.stages import kernel

        say(f"writing a bootable {request.image_type} disk to {request.output}")
        disk = image.from_build(
            repo=repo, ref=ref, checksum=checksum, image_type=request.image_type, family=d.family,
            grubenv_path=d.grubenv_path, release_url=bp.fieldshift.release_url, output_dir=request.output,
            kargs=kernel.KernelOptions(bp.customizations.kernel.append if bp.customizations.kernel else "").kargs,
        )
        return (str(disk.path),)
    say(f"writing commit.tar and kickstart.ks to {request.output}")
    url = f"{bp.fieldshift.release_url.rstrip('/')}/repo" if bp.fieldshift.release_url else INSTALLER_REPO_URL
    out = CommitOutput(repo, ref, checksum, inputhash, bp.version,
                       request.source_date_epoch or int(os.environ.get("SOURCE_DATE_EPOCH") or 0),
                       OSNAMES.get(d.name.split("-")[0], d.name.split("-")[0]), url)
    return tuple(str(p) for p in write_outputs(out, request.output))


def terminal_progress(stream: Any = None) -> Progress:
    """Progress lines to stderr when it is a terminal; silent otherwise."""
    out = stream or sys.stderr
    if not out.isatty():
        return lambda _line: None
    return lambda line: print(line, file=out, flush=True)
