"""Compose speed: our build against a raw ``dnf --installroot`` + ``ostree commit`` baseline, same run.

Times (a) the baseline: dnf installs the same resolved package set into an empty root, then
``ostree commit`` of that root into a fresh archive repo; (b) our cold build of the example blueprint
(empty caches); (c) a no-op rebuild; (d) a rebuild after changing one file customization. Prints the
ratios b/a (target <= 1.3), c/b (<= 0.05) and d/b (<= 0.3). Each figure is the median of ``--rounds``;
every timed step starts after an (untimed) ``sync`` so no step pays for the previous one's writeback.

    .venv/bin/python bench/compose_speed.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder import compose  # noqa: E402
from tests.fixtures import rpmrepo  # noqa: E402

EXAMPLE = ROOT / "blueprints" / "microshift-edge.toml.j2"
EPOCH = 1700000000


def _request(repo_file: Path, work: Path, payload: Path, **variables: str) -> compose.BuildRequest:
    return compose.BuildRequest(blueprint=EXAMPLE, repos=(repo_file,), ostree_repo=work / "repo",
                                cache_dir=work / "cache", source_date_epoch=EPOCH, payload_source=payload,
                                variables={"channel": "stable", **variables})


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    os.sync()  # every step starts without the previous one's dirty pages (untimed)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def baseline(repo_file: Path, nevras: list[str], work: Path) -> float:
    """dnf --installroot of the same packages into an empty root, then ostree commit (fresh caches)."""
    (work / "repos").mkdir(parents=True)
    (work / "repos" / "fixture.repo").write_text(repo_file.read_text())
    (work / "repo").mkdir()

    def run() -> None:
        subprocess.run(["dnf", "-y", "-q", "--noplugins", f"--installroot={work / 'root'}", "--releasever=9",
                        f"--setopt=reposdir={work / 'repos'}", f"--setopt=cachedir={work / 'cache'}",
                        "--setopt=tsflags=nodocs", "--setopt=install_weak_deps=False", "install", *nevras],
                       check=True, capture_output=True)
        subprocess.run(["ostree", "init", f"--repo={work / 'repo'}", "--mode=archive"], check=True)
        subprocess.run(["ostree", "commit", f"--repo={work / 'repo'}", "--branch=baseline",
                        f"--tree=dir={work / 'root'}"], check=True, capture_output=True)
    return _timed(run)


def one_round(repo_file: Path, tmp: Path, n: int) -> tuple[float, float, float, float]:
    work_b = tmp / f"b{n}"
    req = _request(repo_file, work_b, tmp / "payload")
    result: list[compose.BuildResult] = []
    b = _timed(lambda: result.append(compose.build(req)))
    nevras = list(result[0].packages)
    a = baseline(repo_file, nevras, tmp / f"a{n}")
    c = _timed(lambda: result.append(compose.build(req)))
    assert result[-1].reused, "no-op rebuild made a new commit"
    changed = _request(repo_file, work_b, tmp / "payload", base_domain=f"changed{n}.example")
    d = _timed(lambda: result.append(compose.build(changed)))
    assert result[-1].tree_cache_hit and not result[-1].reused
    return a, b, c, d


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="compose-bench-") as tmpdir:
        tmp = Path(tmpdir)
        repo_file = rpmrepo.write_repo(tmp / "fixture")
        for pkg in ("greenboot", "updater"):  # a frozen payload: the checkout may change while we measure
            shutil.copytree(ROOT / pkg, tmp / "payload" / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        rounds = [one_round(repo_file, tmp, n) for n in range(args.rounds)]
    a, b, c, d = (statistics.median(x) for x in zip(*rounds))
    best = [min(x) for x in zip(*rounds)]
    print(f"example blueprint against the fixture repository, {args.rounds} rounds: median (min)")
    labels = ("(a) baseline dnf --installroot + ostree commit", "(b) fieldshift build, cold",
              "(c) fieldshift build, no-op", "(d) fieldshift build, one file changed")
    for label, med, low in zip(labels, (a, b, c, d), best):
        print(f"{label:<47}: {med:7.3f} s  ({low:.3f} s)")
    checks = [("b/a", b / a, best[1] / best[0], 1.3), ("c/b", c / b, best[2] / best[1], 0.05),
              ("d/b", d / b, best[3] / best[1], 0.3)]
    for name, value, low, target in checks:
        verdict = "ok" if value <= target else "MISSED"
        print(f"{name} = {value:.3f}  (min-based {low:.3f}; target <= {target}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
