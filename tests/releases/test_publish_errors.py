"""Bad input to publish gives one clear error and leaves the served tree as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from builder import publish
from greenboot.errors import UserError
from tests.releases.conftest import Builds, make_commit
from updater import catalog as cat


def _request(builds: Builds, release_dir: Path, key: Path, **kw) -> publish.PublishRequest:
    fields = dict(build_repo=builds.repo, ref=builds.ref, channel="stable", release_dir=release_dir, keys=(key,),
                  deltas_from=1)
    fields.update(kw)
    return publish.PublishRequest(**fields)


def _served(release_dir: Path) -> dict[str, bytes]:
    """Every served file's content (the tree a web server would expose)."""
    return {
        str(p.relative_to(release_dir)): p.read_bytes()
        for p in sorted(release_dir.rglob("*"))
        if p.is_file() and not p.name.startswith(".publish")
    }


@pytest.fixture()
def one_release(tmp_path: Path, builds: Builds, keypair) -> Path:
    release_dir = tmp_path / "release"
    publish.publish(_request(builds, release_dir, keypair.private_key, commit=builds.commits[1]))
    return release_dir


def test_unknown_ref_is_refused(tmp_path: Path, builds: Builds, keypair) -> None:
    with pytest.raises(publish.PublishError, match=r"ref 'no/such/ref' is not in .* \(refs: fieldshift/x86_64/edge\)"):
        publish.publish(_request(builds, tmp_path / "rel", keypair.private_key, ref="no/such/ref"))
    assert not (tmp_path / "rel" / "catalog.json").exists()


def test_unknown_commit_is_refused(tmp_path: Path, builds: Builds, keypair) -> None:
    with pytest.raises(publish.PublishError, match="commit 'abc123' is not in"):
        publish.publish(_request(builds, tmp_path / "rel", keypair.private_key, commit="abc123"))


def test_missing_signing_key_is_refused_before_anything_is_written(tmp_path: Path, builds: Builds) -> None:
    with pytest.raises(cat.SigningKeyError, match="does not exist"):
        publish.publish(_request(builds, tmp_path / "rel", tmp_path / "nope.key"))
    assert not (tmp_path / "rel").exists()


def test_world_readable_signing_key_is_refused(tmp_path: Path, builds: Builds, keypair) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(keypair.private_key.read_bytes())
    loose.chmod(0o644)
    with pytest.raises(cat.SigningKeyError, match="readable by others"):
        publish.publish(_request(builds, tmp_path / "rel", loose))


def test_unwritable_release_dir_is_refused(tmp_path: Path, builds: Builds, keypair) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    with pytest.raises(publish.PublishError, match="is not writable"):
        publish.publish(_request(builds, blocker / "release", keypair.private_key))


def test_older_version_than_the_channel_newest_is_refused(one_release: Path, builds: Builds, keypair) -> None:
    before = _served(one_release)
    with pytest.raises(publish.PublishError, match="already has release 1.1, which is newer than 1.0"):
        publish.publish(_request(builds, one_release, keypair.private_key, commit=builds.commits[0]))
    assert _served(one_release) == before
    assert not (one_release / ".publish-journal").exists()


def test_same_version_with_another_commit_is_refused(one_release: Path, builds: Builds, keypair) -> None:
    with pytest.raises(publish.PublishError, match="version 1.1 is already published"):
        publish.publish(_request(builds, one_release, keypair.private_key, commit=builds.commits[2], version="1.1"))


def test_republishing_the_same_release_changes_nothing(one_release: Path, builds: Builds, keypair) -> None:
    before = _served(one_release)
    result = publish.publish(_request(builds, one_release, keypair.private_key, commit=builds.commits[1]))
    assert not result.changed
    assert _served(one_release) == before


def test_a_reader_holding_the_previous_catalog_still_verifies_during_the_swap(
    one_release: Path, builds: Builds, keypair
) -> None:
    old = (one_release / "catalog.json").read_bytes()
    publish.publish(_request(builds, one_release, keypair.private_key, commit=builds.commits[2]))
    new_sig = (one_release / "catalog.json.sig").read_bytes()
    now = datetime.now(timezone.utc)
    # The signature file is swapped first and still signs the old catalog too: old catalog + new
    # signature file verifies, so there is no moment a reader sees a mismatched pair.
    assert cat.verify(old, new_sig, [keypair.public_key], last_serial=None, now=now).serial == 1
    new = cat.verify((one_release / "catalog.json").read_bytes(), new_sig, [keypair.public_key],
                     last_serial=1, now=now)
    assert new.serial == 2


def test_withdraw_marks_the_release_and_moves_the_ref_back(one_release: Path, builds: Builds, keypair) -> None:
    publish.publish(_request(builds, one_release, keypair.private_key, commit=builds.commits[2]))
    result = publish.withdraw(one_release, "stable", "1.2", (keypair.private_key,))
    assert result.release.withdrawn and result.serial == 3
    catalog = cat.parse((one_release / "catalog.json").read_bytes())
    assert [r.withdrawn for r in catalog.channel("stable").releases] == [False, True]
    head = subprocess.run(["ostree", "rev-parse", f"--repo={one_release / 'repo'}", builds.ref],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert head == builds.commits[1]
    with pytest.raises(cat.UnknownRelease):
        publish.withdraw(one_release, "stable", "9.9", (keypair.private_key,))


def test_refresh_bumps_serial_and_expiry_only(one_release: Path, keypair) -> None:
    before = cat.parse((one_release / "catalog.json").read_bytes())
    after = publish.refresh(one_release, (keypair.private_key,), valid_days=90)
    assert after.serial == before.serial + 1 and after.channels == before.channels
    assert after.expires > before.expires


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder.cli", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])


def test_cli_error_is_one_line_with_a_nonzero_exit(tmp_path: Path, builds: Builds, keypair) -> None:
    proc = _cli("publish", "--ostree-repo", str(builds.repo), "--ref", "nope", "--channel", "stable",
                "--release-dir", str(tmp_path / "rel"), "--key", str(keypair.private_key))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("fieldshift: error: ref 'nope' is not in")


def test_interrupted_publish_leaves_the_old_release_served_and_is_refused_until_recovered(
    tmp_path: Path, builds: Builds, keypair
) -> None:
    release_dir = tmp_path / "release"
    publish.publish(_request(builds, release_dir, keypair.private_key, commit=builds.commits[0]))
    before = {k: v for k, v in _served(release_dir).items() if not k.startswith("repo/")}
    # A bigger new build, so the publish is still busy when it is killed.
    tree, other_repo = tmp_path / "tree", tmp_path / "other-build"
    (tree / "usr/lib").mkdir(parents=True)
    for i in range(4):
        (tree / "usr/lib" / f"blob{i}").write_bytes(os.urandom(1024 * 1024))
    subprocess.run(["ostree", "init", f"--repo={other_repo}", "--mode=archive"], check=True)
    commit = make_commit(other_repo, tree, "2.0", ref="fieldshift/test/interrupted")
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder.cli", "publish", "--ostree-repo", str(other_repo), "--ref",
         "fieldshift/test/interrupted", "--channel", "stable", "--release-dir", str(release_dir), "--key",
         str(keypair.private_key), "--commit", commit],
        cwd=Path(__file__).resolve().parents[2], start_new_session=True,
    )
    journal = release_dir / ".publish-journal"
    deadline = time.monotonic() + 30
    while not journal.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert journal.exists(), "publish finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert journal.exists()
    # Readers still get the old, complete, verifiable release.
    assert {k: v for k, v in _served(release_dir).items() if not k.startswith("repo/")} == before
    cat.verify((release_dir / "catalog.json").read_bytes(), (release_dir / "catalog.json.sig").read_bytes(),
               [keypair.public_key], last_serial=None, now=datetime.now(timezone.utc))
    request = _request(builds, release_dir, keypair.private_key, build_repo=other_repo,
                       ref="fieldshift/test/interrupted", commit=commit)
    with pytest.raises(publish.PublishError, match="was interrupted.*--recover"):
        publish.publish(request)
    result = publish.publish(publish.PublishRequest(**{**request.__dict__, "recover": True}))
    assert result.changed and result.serial == 2 and not journal.exists()


def test_every_publish_error_is_a_user_error() -> None:
    assert issubclass(publish.PublishError, UserError)


def test_a_second_publish_while_one_runs_is_refused(one_release: Path, builds: Builds, keypair) -> None:
    import fcntl

    with open(one_release / ".publish.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(publish.PublishError, match="another publish .* is running"):
            publish.publish(_request(builds, one_release, keypair.private_key, commit=builds.commits[2]))
    assert not (one_release / ".publish-journal").exists()


def test_no_scratch_delta_publishes_only_the_update_deltas(tmp_path: Path, builds: Builds, keypair) -> None:
    release_dir = tmp_path / "rel"
    for commit in builds.commits[:2]:
        proc = _cli("publish", "--ostree-repo", str(builds.repo), "--ref", builds.ref, "--commit", commit,
                    "--channel", "stable", "--release-dir", str(release_dir), "--key", str(keypair.private_key),
                    "--no-scratch-delta")
        assert proc.returncode == 0, proc.stderr
    raw = (release_dir / "catalog.json").read_bytes()
    newest = cat.parse(raw).channel("stable").releases[-1]
    assert [d.from_commit for d in newest.deltas] == [builds.commits[0]]
    # ostree names a delta's directory FROM-TO, a from-scratch one TO alone.
    supers = [p.parent.name for p in (release_dir / "repo" / "deltas").rglob("superblock")]
    assert len(supers) == 1 and "-" in supers[0], supers
