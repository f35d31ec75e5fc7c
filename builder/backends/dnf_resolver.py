"""Depsolve a package request with dnf's Python API; run by the system Python that ships dnf.

Reads one JSON request line on stdin, writes one JSON answer line on stdout (the role osbuild's
``dnf-json`` plays). It never touches the host's package database or repositories: the system repo is
not loaded and only the ``.repo`` files in the given ``reposdir`` are read. It imports nothing from
fieldshift, so it runs under whatever Python the host's dnf uses.

Answer: ``{"packages": [...], "repos": {...}}`` or ``{"error": {"kind": ..., ...}}`` with kind
``missing`` (``specs``), ``depsolve`` (``message``, ``specs`` involved) or ``repo`` (``repo``, ``message``).

After a successful answer it reads one more line: ``{"dnf": [ARGS...]}`` runs the dnf command line
(``dnf.cli.main.user_main``, exactly what ``/usr/bin/dnf`` runs) in this already warm process, with
dnf's output sent to stderr, and answers ``{"exit": CODE}``; an empty line or end of input ends it.
"""

import json
import sys


def _configure(base, req):
    conf = base.conf
    conf.cachedir = req["cachedir"]
    conf.reposdir = [req["reposdir"]]
    conf.varsdir = []
    conf.install_weak_deps = False
    conf.gpgcheck = False
    conf.assumeyes = True
    conf.skip_if_unavailable = False
    conf.substitutions["releasever"] = req["releasever"]
    conf.substitutions["basearch"] = req["basearch"]
    conf.substitutions["arch"] = req["arch"]
    conf.arch = req["arch"]
    conf.basearch = req["basearch"]
    conf.exclude = list(req.get("excludes", []))
    conf.protected_packages = []


def _answer(obj):
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


def _run_dnf_cli(argv):
    import os

    import dnf.cli.main

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # dnf prints to stdout; our protocol owns it
    try:
        code = dnf.cli.main.user_main(argv, exit_code=False)
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    return _answer({"exit": code or 0})


def main():
    req = json.loads(sys.stdin.readline())
    import dnf
    import dnf.exceptions
    import dnf.subject
    import hawkey

    base = dnf.Base()
    _configure(base, req)
    base.read_all_repos()
    for repo in base.repos.iter_enabled():
        repo.skip_if_unavailable = False
    try:
        base.fill_sack(load_system_repo=False)
    except dnf.exceptions.RepoError as err:
        text = str(err)
        repo_id = ""
        for repo in base.repos.iter_enabled():
            if repo.id in text:
                repo_id = repo.id
        return _answer({"error": {"kind": "repo", "repo": repo_id, "message": text}})

    matched = {}
    missing = []
    for spec in req["specs"]:
        query = dnf.subject.Subject(spec).get_best_query(base.sack, with_provides=True)
        names = sorted({p.name for p in query})
        matched[spec] = names
        try:
            if spec.startswith("@"):
                base.group_install(spec[1:], ["mandatory", "default"])
            else:
                base.install(spec, strict=True)
        except (dnf.exceptions.MarkingError, dnf.exceptions.CompsError):
            missing.append(spec)
    if missing:
        return _answer({"error": {"kind": "missing", "specs": missing}})
    try:
        base.resolve()
    except dnf.exceptions.DepsolveError as err:
        text = str(err)
        involved = [s for s, names in matched.items() if any(n in text for n in names)]
        return _answer({"error": {"kind": "depsolve", "message": text, "specs": involved}})

    packages = []
    for pkg in base.transaction.install_set:
        chk = pkg.chksum
        checksum = f"{hawkey.chksum_name(chk[0])}:{chk[1].hex()}" if chk else ""
        packages.append({
            "name": pkg.name, "epoch": pkg.epoch, "version": pkg.version, "release": pkg.release,
            "arch": pkg.arch, "repo_id": pkg.reponame, "checksum": checksum,
            "location": pkg.remote_location() or "",
        })
    repos = {}
    for repo in base.repos.iter_enabled():
        repos[repo.id] = {"baseurl": list(repo.baseurl or []), "revision": str(repo._repo.getRevision())}
    _answer({"packages": packages, "repos": repos})
    base.close()
    line = sys.stdin.readline()
    if not line.strip():
        return 0
    return _run_dnf_cli(json.loads(line)["dnf"])


if __name__ == "__main__":
    sys.exit(main())
