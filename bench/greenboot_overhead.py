"""Overhead of fieldshift-greenboot's runner against a plain bash loop over the same scripts.

Builds a root with 50 trivial required checks (``*.sh``, run with bash), then, in the same run and
interleaved to share machine noise:

- baseline: one ``bash -c 'for f in DIR/*.sh; do bash "$f"; done'`` over the same 50 scripts;
- ours: ``fieldshift-greenboot --root ROOT check`` (start-up, discovery, timeouts, journal lines,
  boot report, MOTD);
- start-up: ``fieldshift-greenboot --root EMPTY check`` with no scripts at all.

Prints the ratio ours/baseline, the per-check overhead ``(ours - startup - baseline) / 50`` in ms and
the start-up in ms, against the targets (< 10 ms per check, < 150 ms start-up). Medians and minimums
of REPEAT interleaved runs (the minimum is the better estimate on a shared, noisy machine), plus the
bare interpreter start-up (``python -c pass``) for reference.

Bytecode is cached in a temporary ``PYTHONPYCACHEPREFIX`` (a device's packages ship ``.pyc``), even when
the environment sets ``PYTHONDONTWRITEBYTECODE``; the first, compiling run is not measured.

    .venv/bin/python bench/greenboot_overhead.py [--checks 50] [--repeat 7]
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

TARGET_PER_CHECK_MS = 10.0
TARGET_STARTUP_MS = 150.0


def cli() -> str:
    found = Path(sys.executable).parent / "fieldshift-greenboot"
    if found.exists():
        return str(found)
    path = shutil.which("fieldshift-greenboot")
    if path is None:
        sys.exit("fieldshift-greenboot is not installed; run .ci/setup")
    return path


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    exe = cli()
    with tempfile.TemporaryDirectory(prefix="greenboot-bench-") as tmp:
        root, empty = Path(tmp, "root"), Path(tmp, "empty")
        scripts = root / "usr/lib/greenboot/check/required.d"
        scripts.mkdir(parents=True)
        empty.mkdir()
        for i in range(args.checks):
            (scripts / f"{i:03d}_check.sh").write_text("exit 0\n")
        loop = ["bash", "-c", f'for f in "{scripts}"/*.sh; do bash "$f" || exit 1; done']
        ours = [exe, "--root", str(root), "check"]
        startup = [exe, "--root", str(empty), "check"]
        python = [sys.executable, "-c", "pass"]
        env = dict(os.environ, PYTHONPYCACHEPREFIX=str(Path(tmp, "pycache")))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # sanity (and bytecode warm-up): both pass
        assert subprocess.run(loop, check=False).returncode == 0
        assert subprocess.run(ours, capture_output=True, check=False, env=env).returncode == 0, "runner failed"
        subprocess.run(startup, capture_output=True, check=False, env=env)
        runs: dict[str, list[float]] = {"base": [], "ours": [], "start": [], "python": []}
        for _ in range(args.repeat):
            runs["base"].append(timed(loop, env))
            runs["ours"].append(timed(ours, env))
            runs["start"].append(timed(startup, env))
            runs["python"].append(timed(python, env))
        print(f"checks: {args.checks}, repeats: {args.repeat} (load average {os.getloadavg()[0]:.1f})")
        print(f"{'':24}{'median':>10}{'min':>10}")
        for label, pick in (("median", statistics.median), ("min", min)):
            base, mine, start = (pick(runs[k]) * 1000 for k in ("base", "ours", "start"))
            runs[f"_{label}"] = [base, mine, start, pick(runs["python"]) * 1000]
        med, low = runs["_median"], runs["_min"]
        rows = (
            ("bash loop baseline", 0),
            ("fieldshift-greenboot", 1),
            ("start-up (no scripts)", 2),
            ("python -c pass", 3),
        )
        for label, i in rows:
            print(f"{label + ':':24}{med[i]:8.1f}ms{low[i]:8.1f}ms")
        for label, vals in (("median", med), ("min", low)):
            base, mine, start = vals[0], vals[1], vals[2]
            per_check = (mine - start - base) / args.checks
            print(
                f"[{label}] ratio ours/baseline {mine / base:.2f}x; "
                f"overhead per check {per_check:.2f} ms (target < {TARGET_PER_CHECK_MS:.0f}: "
                f"{'OK' if per_check < TARGET_PER_CHECK_MS else 'OVER'}); "
                f"start-up {start:.1f} ms (target < {TARGET_STARTUP_MS:.0f}: "
                f"{'OK' if start < TARGET_STARTUP_MS else 'OVER'})"
            )


if __name__ == "__main__":
    main()
