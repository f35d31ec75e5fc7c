"""`--gpg-key`: commit and summary GPG-signed the RHEL for Edge way, accepted by stock ostree with gpg-verify."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder import publish
from greenboot.external import ToolError, run
from tests.httpserve import StaticServer
from tests.releases.conftest import Builds


def _gnupg_home(path: Path, name: str) -> tuple[Path, str, Path]:
    """A throwaway GNUPGHOME with one signing key: (home, fingerprint, exported public key)."""
    path.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(path)}
    run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
         f"{name} <release@example.invalid>", "ed25519", "sign", "never"], env=env)
    fpr = next(line.split(":")[9] for line in run(["gpg", "--list-keys", "--with-colons"], env=env).stdout.splitlines()
               if line.startswith("fpr:"))
    pub = path.parent / f"{path.name}.asc"
    pub.write_text(run(["gpg", "--export", "--armor", fpr], env=env).stdout)
    return path, fpr, pub


@pytest.fixture()
def gpg_homes(tmp_path: Path):
    homes = [_gnupg_home(tmp_path / "gpg-release", "fieldshift release"),
             _gnupg_home(tmp_path / "gpg-other", "someone else")]
    yield homes
    for home, _, _ in homes:
        run(["gpgconf", "--kill", "gpg-agent"], env={"GNUPGHOME": str(home)}, check=False)


def _client(path: Path, url: str, pubkey: Path) -> Path:
    run(["ostree", "init", f"--repo={path}", "--mode=bare"])
    run(["ostree", "remote", "add", f"--repo={path}", "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
         f"--gpg-import={pubkey}", "rel", url])
    return path


def test_gpg_signed_release_is_accepted_by_a_gpg_verifying_client_and_refused_with_another_key(
    tmp_path: Path, builds: Builds, keypair, gpg_homes
) -> None:
    (home, fpr, pub), (_, _, other_pub) = gpg_homes
    release_dir = tmp_path / "release"
    publish.publish(publish.PublishRequest(
        build_repo=builds.repo, ref=builds.ref, commit=builds.commits[0], channel="stable", release_dir=release_dir,
        keys=(keypair.private_key,), gpg_key=fpr, gpg_homedir=home,
    ))
    assert (release_dir / "repo" / "summary.sig").is_file()
    commit = builds.commits[0]
    assert (release_dir / "repo" / "objects" / commit[:2] / f"{commit[2:]}.commitmeta").is_file()
    with StaticServer(release_dir) as server:
        good = _client(tmp_path / "good", f"{server.url}/repo", pub)
        run(["ostree", "pull", f"--repo={good}", "rel", builds.ref])
        assert run(["ostree", "rev-parse", f"--repo={good}", f"rel:{builds.ref}"]).stdout.strip() == commit
        shown = run(["ostree", "show", f"--repo={good}", "--gpg-verify-remote=rel", commit]).stdout
        assert "Good signature" in shown and fpr[-16:] in shown.replace(" ", "")
        bad = _client(tmp_path / "bad", f"{server.url}/repo", other_pub)
        with pytest.raises(ToolError, match="(?i)signature|gpg|keyring"):
            run(["ostree", "pull", f"--repo={bad}", "rel", builds.ref])
    assert not os.path.exists(tmp_path / "bad" / "refs" / "remotes" / "rel" / builds.ref)


def test_publishing_into_a_gpg_signed_release_dir_without_gpg_key_is_refused(
    tmp_path: Path, builds: Builds, keypair, gpg_homes
) -> None:
    (home, fpr, _), _ = gpg_homes
    release_dir = tmp_path / "release"
    first = dict(build_repo=builds.repo, ref=builds.ref, channel="stable", release_dir=release_dir,
                 keys=(keypair.private_key,), deltas_from=1)
    publish.publish(publish.PublishRequest(**first, commit=builds.commits[0], gpg_key=fpr, gpg_homedir=home))
    summary_sig = (release_dir / "repo" / "summary.sig").read_bytes()
    with pytest.raises(publish.PublishError, match="GPG-signed.*--gpg-key"):
        publish.publish(publish.PublishRequest(**first, commit=builds.commits[1]))
    with pytest.raises(publish.PublishError, match="GPG-signed"):
        publish.withdraw(release_dir, "stable", "1.0", (keypair.private_key,))
    assert (release_dir / "repo" / "summary.sig").read_bytes() == summary_sig
