"""The dnf backend: depsolve with dnf's Python API, install with real ``dnf --installroot``.

Depsolve results are cached by :func:`resolution_key` (the request plus every repository's current
``repomd.xml``), so an unchanged rebuild does not load repository metadata at all.

Only the ``.repo`` files given in the request are read (a private ``reposdir``); the host's
repositories, vars, plugins and rpm database are never used. The target's rpm database is written at
the distro's own path (``%_dbpath`` through a private ``~/.rpmmacros``), and ostree prep later moves it
to ``/usr/share/rpm`` as rpm-ostree does.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from builder.backends import (
    DepsolveError,
    MissingPackageError,
    PackageError,
    PackageRequest,
    PackageSet,
    Progress,
    RepositoryError,
    ResolvedPackage,
    no_progress,
)
from builder.cache import write_entry
from greenboot.external import ToolError, run

log = logging.getLogger("fieldshift.external")
RESOLVER = Path(__file__).with_name("dnf_resolver.py")
# Interpreters that may carry the host's dnf Python module (RHEL's platform-python first).
SYSTEM_PYTHONS = ("/usr/libexec/platform-python", "/usr/bin/python3")


def _basearch(arch: str) -> str:
    return {"i686": "i386", "armv7hl": "armhfp"}.get(arch, arch)


def _system_python() -> str:
    for candidate in SYSTEM_PYTHONS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise PackageError("no system Python with the dnf module found; install dnf (python3-dnf)")


def _first_line(text: str) -> str:
    """The gist of a dnf error: the ``Error:`` line, joined with its first detail when it ends in ``:``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Error:")), 0)
    if not lines:
        return text.strip()
    head = lines[start].removeprefix("Error:").strip()
    if (not head or head.endswith(":")) and start + 1 < len(lines):
        head = f"{head} {lines[start + 1]}".strip()
    return head


class _Workspace:
    """A private temp dir with a ``reposdir`` holding copies of the request's .repo files and a HOME."""

    def __init__(self, request: PackageRequest) -> None:
        self.request = request
        request.cache_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="dnf-", dir=request.cache_dir))
        self.reposdir = self.dir / "repos.d"
        self.reposdir.mkdir()
        for i, repo in enumerate(request.repo_files):
            # Keep the file's own name (dnf only reads *.repo); prefix keeps order and avoids clashes.
            shutil.copyfile(repo, self.reposdir / f"{i:02d}-{repo.name}")
        self.home = self.dir / "home"
        self.home.mkdir()
        (self.home / ".rpmmacros").write_text(f"%_dbpath {request.dbpath}\n")
        self.conf = self.dir / "dnf.conf"
        self.conf.write_text("[main]\ninstall_weak_deps=False\nprotected_packages=\n")
        self.cachedir = request.cache_dir / "dnf"

    def __enter__(self) -> _Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _env(ws: _Workspace) -> dict[str, str]:
    env = {"HOME": str(ws.home), "LC_ALL": "C.UTF-8"}
    if "SOURCE_DATE_EPOCH" not in os.environ:
        # rpm stamps install times with SOURCE_DATE_EPOCH: a fixed value keeps the rpmdb reproducible.
        env["SOURCE_DATE_EPOCH"] = "0"
    return env


def _query(ws: _Workspace, request: PackageRequest) -> str:
    return json.dumps({
        "cachedir": str(ws.cachedir),
        "reposdir": str(ws.reposdir),
        "releasever": request.releasever,
        "arch": request.arch,
        "basearch": _basearch(request.arch),
        "specs": [s.spec for s in request.specs],
        "excludes": list(request.excludes),
    })


class _Session:
    """A resolver process that answered and stays warm to run the dnf command line for the install.

    Saves a second interpreter start, ``import dnf`` and metadata load on a cold build. dnf's own
    output goes to a file (``stderr``) so the JSON protocol on stdout stays clean.
    """

    def __init__(self, request: PackageRequest) -> None:
        self.ws = _Workspace(request)
        self.errlog = self.ws.dir / "stderr"
        with self.errlog.open("w") as err:
            self.proc = subprocess.Popen(
                [_system_python(), "-I", str(RESOLVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, text=True, env={**os.environ, **_env(self.ws)},
            )
        log.debug("run: %s -I %s (warm session)", _system_python(), RESOLVER)

    def ask(self, message: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(message + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            stderr = self.errlog.read_text() if self.errlog.exists() else ""
            raise ToolError([_system_python(), str(RESOLVER)], self.proc.returncode or 1, stderr)
        answer: dict = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.ws.__exit__()


class DnfBackend:
    """Resolve and install RPM package sets with dnf.

    With ``request.prefetch`` the resolver process stays warm after a fresh depsolve and the following
    :meth:`install` of that set runs the dnf command line inside it; call :meth:`close` when done.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}

    def resolve(self, request: PackageRequest) -> PackageSet:
        if not request.repo_files:
            raise RepositoryError("no repositories given; pass --repos FILE_OR_DIR with dnf .repo files")
        key = resolution_key(request)
        memo = request.cache_dir / "depsolve" / f"{key}.json" if key else None
        if memo is not None and memo.exists():
            return self._package_set(json.loads(memo.read_text()), request)
        if request.prefetch:
            session = _Session(request)
            try:
                answer = session.ask(_query(session.ws, request))
                if "error" in answer:
                    raise self._error(answer["error"], request)
            except BaseException:
                session.close()
                raise
        else:
            answer, session = self._resolve(request), None
        if memo is not None:
            write_entry(memo, answer)
        pkgset = self._package_set(answer, request)
        if session is not None:
            self._sessions.setdefault(pkgset.digest, session)
        return pkgset

    def close(self) -> None:
        """End warm resolver processes that were not used for an install."""
        while self._sessions:
            self._sessions.popitem()[1].close()

    def __del__(self) -> None:  # a caller that returned early without close(): end the processes anyway
        self.close()

    def _resolve(self, request: PackageRequest) -> dict:
        with _Workspace(request) as ws:
            proc = run([_system_python(), "-I", str(RESOLVER)], input=_query(ws, request), env={"HOME": str(ws.home)})
        answer: dict = json.loads(proc.stdout)
        if "error" in answer:
            raise self._error(answer["error"], request)
        return answer

    @staticmethod
    def _package_set(answer: dict, request: PackageRequest) -> PackageSet:
        pkgs = tuple(
            ResolvedPackage(
                name=p["name"], epoch=int(p["epoch"]), version=p["version"], release=p["release"],
                arch=p["arch"], repo_id=p["repo_id"], checksum=p["checksum"], location=p["location"],
            )
            for p in answer["packages"]
        )
        return PackageSet(pkgs, request)

    @staticmethod
    def _error(err: dict, request: PackageRequest) -> PackageError:
        by_spec = {s.spec: s for s in request.specs}
        if err["kind"] == "missing":
            specs = [by_spec[s] for s in err["specs"] if s in by_spec]
            first = specs[0]
            more = f" (and {len(specs) - 1} more)" if len(specs) > 1 else ""
            return MissingPackageError(
                f'{first.label}: no package matches "{first.spec}" in the given repositories{more}; '
                "check the name and version or add the repository that has it"
            )
        if err["kind"] == "depsolve":
            labels = ", ".join(by_spec[s].label for s in err.get("specs", []) if s in by_spec)
            problem = " ".join(line.strip() for line in err["message"].splitlines() if line.strip().startswith("-"))
            problem = problem.lstrip("- ") or _first_line(err["message"])
            where = f"{labels}: " if labels else ""
            return DepsolveError(f"{where}cannot resolve the package set: {problem}")
        repo = err.get("repo") or "?"
        return RepositoryError(
            f'repository "{repo}" is unusable: {_first_line(err["message"])}; '
            "check that its baseurl is reachable and has repodata/repomd.xml"
        )

    def install(self, pkgset: PackageSet, root: Path, progress: Progress = no_progress) -> None:
        request = pkgset.request
        root.mkdir(parents=True, exist_ok=True)
        progress(f"installing {len(pkgset.packages)} packages with dnf")
        session = self._sessions.pop(pkgset.digest, None)
        with session.ws if session else _Workspace(request) as ws:
            argv = [
                "dnf", "-y", "-q", "--noplugins",
                f"--installroot={root}",
                f"--config={ws.conf}",
                f"--releasever={request.releasever}",
                f"--setopt=reposdir={ws.reposdir}",
                f"--setopt=cachedir={ws.cachedir}",
                "--setopt=varsdir=",
                "--setopt=tsflags=nodocs",
                "--setopt=install_weak_deps=False",
                "--setopt=keepcache=True",
                "--setopt=skip_if_unavailable=False",
            ]
            if request.excludes:
                argv.append(f"--setopt=excludepkgs={','.join(request.excludes)}")
            if request.arch != platform.machine():
                argv.append(f"--forcearch={request.arch}")
            argv += ["install", *[p.nevra for p in pkgset.packages]]
            try:
                if session is not None:
                    self._install_in_session(session, argv)
                else:
                    run(argv, env=_env(ws))
            except ToolError as err:
                raise PackageError(
                    f"dnf could not install the resolved packages: {_first_line(err.stderr or err.stdout)}"
                ) from err


    @staticmethod
    def _install_in_session(session: _Session, argv: list[str]) -> None:
        """``dnf ARGS`` inside the warm resolver (the same ``dnf.cli.main`` that ``/usr/bin/dnf`` runs)."""
        log.debug("run (warm dnf): %s", " ".join(argv))
        try:
            answer = session.ask(json.dumps({"dnf": argv[1:]}))
            if answer.get("exit", 1) != 0:
                raise ToolError(argv, int(answer.get("exit", 1)), session.errlog.read_text())
        finally:
            session.close()


def _repomd_urls(request: PackageRequest) -> list[str] | None:
    """``repodata/repomd.xml`` URL of every enabled repo, or ``None`` when one cannot be pinned down."""
    import configparser

    urls = []
    for path in request.repo_files:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(path)
        except configparser.Error:
            return None
        for section in parser.sections():
            repo = parser[section]
            if repo.get("enabled", "1").strip() in ("0", "false", "no"):
                continue
            base = (repo.get("baseurl") or "").split()
            if not base:
                return None  # metalink / mirrorlist: let dnf decide
            url = base[0].replace("$releasever", request.releasever).replace("$basearch", _basearch(request.arch))
            urls.append(url.rstrip("/") + "/repodata/repomd.xml")
    return urls


def _fetch(url: str) -> bytes | None:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - file:// and http(s) repos only
            return bytes(resp.read())
    except (OSError, ValueError):
        return None


def resolution_key(request: PackageRequest) -> str | None:
    """Hash of the request and every repository's current ``repomd.xml``; ``None`` if not determinable.

    Equal keys mean dnf would resolve the same set: depsolve results are cached under this key, so an
    unchanged rebuild skips loading repository metadata.
    """
    import hashlib

    urls = _repomd_urls(request)
    if urls is None:
        return None
    h = hashlib.sha256(json.dumps({
        "specs": [s.spec for s in request.specs], "excludes": list(request.excludes),
        "releasever": request.releasever, "arch": request.arch, "dbpath": request.dbpath,
        "repos": [p.read_text() for p in request.repo_files],
    }, sort_keys=True).encode())
    for url in urls:
        data = _fetch(url)
        if data is None:
            return None
        h.update(url.encode() + b"\0" + data)
    return h.hexdigest()
