"""Bad input stops a build with one clear line, a non-zero exit, no ref change and no stray trees."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from builder import ostree
from tests.compose.conftest import EXAMPLE, cli

pytestmark = pytest.mark.slow


def blueprint(tmp_path: Path, packages: list[str], extra: str = "") -> Path:
    body = 'name = "bad"\nversion = "0.1.0"\ndistro = "rhel-9"\n'
    for name in packages:
        n, _, v = name.partition("=")
        body += f'[[packages]]\nname = "{n}"\n' + (f'version = "{v}"\n' if v else "")
    path = tmp_path / "bad.toml"
    path.write_text(body + extra)
    return path


def build(tmp_path: Path, bp: Path, repos: Path, *extra: str):
    return cli("build", str(bp), "--repos", str(repos), "--ostree-repo", str(tmp_path / "repo"),
               "--cache-dir", str(tmp_path / "cache"), *extra)


def assert_clean_failure(proc, tmp_path: Path, *needles: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    repo = tmp_path / "repo"
    if (repo / "config").exists():
        assert ostree.refs(repo) == []
    assert not list((tmp_path / "cache").glob("build-*"))
    assert not list((tmp_path / "cache").glob("trees/.*"))


def test_missing_package_names_the_blueprint_entry(tmp_path: Path, repo_file: Path) -> None:
    bp = blueprint(tmp_path, ["microshift", "hello", "firewalld", "foo=1.2"])
    proc = build(tmp_path, bp, repo_file)
    assert_clean_failure(proc, tmp_path, 'packages[3] "foo-1.2"', "no package matches")


def test_version_glob_that_matches_nothing_is_missing(tmp_path: Path, repo_file: Path) -> None:
    proc = build(tmp_path, blueprint(tmp_path, ["hello=3.*"]), repo_file)
    assert_clean_failure(proc, tmp_path, 'packages[0] "hello-3.*"')


def test_conflicting_packages_name_both_entries(tmp_path: Path, repo_file: Path) -> None:
    proc = build(tmp_path, blueprint(tmp_path, ["conflict-a", "conflict-b"]), repo_file)
    assert_clean_failure(proc, tmp_path, 'packages[0] "conflict-a"', 'packages[1] "conflict-b"', "conflicts")


def test_missing_dependency_names_the_package(tmp_path: Path, repo_file: Path) -> None:
    proc = build(tmp_path, blueprint(tmp_path, ["needs-missing"]), repo_file)
    assert_clean_failure(proc, tmp_path, "does-not-exist-anywhere", 'packages[0] "needs-missing"')


def test_unreachable_repository_is_named(tmp_path: Path) -> None:
    repo = tmp_path / "down.repo"
    repo.write_text("[down]\nname=down\nbaseurl=http://127.0.0.1:9/nothing\ngpgcheck=0\n")
    proc = build(tmp_path, blueprint(tmp_path, ["hello"]), repo)
    assert_clean_failure(proc, tmp_path, 'repository "down"')


def test_repository_without_metadata_is_named(tmp_path: Path, repo_file: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(Path(repo_file.read_text().split("baseurl=file://")[1].split()[0]) / "Packages", bare)
    repo = tmp_path / "bare.repo"
    repo.write_text(f"[bare]\nname=bare\nbaseurl=file://{bare}\ngpgcheck=0\n")
    proc = build(tmp_path, blueprint(tmp_path, ["hello"]), repo)
    assert_clean_failure(proc, tmp_path, 'repository "bare"', "repodata/repomd.xml")


def test_blueprint_error_is_one_line(tmp_path: Path, repo_file: Path) -> None:
    bp = tmp_path / "broken.toml"
    bp.write_text('name = "x"\nversion = "1"\n[customizations]\nhostnme = "a"\n')
    proc = build(tmp_path, bp, repo_file)
    assert_clean_failure(proc, tmp_path, "hostnme")


def test_unknown_microshift_key_fails_before_committing(tmp_path: Path, repo_file: Path) -> None:
    extra = '[[customizations.files]]\npath = "/etc/microshift/config.yaml"\ndata = "dnss:\\n  baseDomain: x\\n"\n'
    proc = build(tmp_path, blueprint(tmp_path, ["microshift"], extra), repo_file)
    assert_clean_failure(proc, tmp_path, "/etc/microshift/config.yaml.dnss", 'did you mean "dns"')


def test_bad_cluster_cidr_is_refused(tmp_path: Path, repo_file: Path) -> None:
    extra = ('[[customizations.files]]\npath = "/etc/microshift/config.yaml"\n'
             'data = "network:\\n  clusterNetwork:\\n    - 10.42.0.0/33\\n"\n')
    proc = build(tmp_path, blueprint(tmp_path, ["microshift"], extra), repo_file)
    assert_clean_failure(proc, tmp_path, "network.clusterNetwork[0]", "10.42.0.0/33")


def test_unknown_service_names_the_key(tmp_path: Path, repo_file: Path) -> None:
    extra = '[customizations.services]\nenabled = ["nope"]\n'
    proc = build(tmp_path, blueprint(tmp_path, ["hello"], extra), repo_file)
    assert_clean_failure(proc, tmp_path, "customizations.services.enabled[0]", "nope.service")


def test_failed_commit_leaves_no_ref_and_no_tree(tmp_path: Path, repo_file: Path) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "junk").write_text("not a repo")
    proc = build(tmp_path, blueprint(tmp_path, ["hello"]), repo_file)
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "not an ostree repository" in proc.stderr


def test_depsolve_and_freeze_share_the_resolver(tmp_path: Path, repo_file: Path) -> None:
    proc = cli("blueprint", "depsolve", str(EXAMPLE), "--var", "channel=stable", "--repos", str(repo_file),
               "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr
    assert "microshift-0:4.14.6-1.fixture.noarch" in proc.stdout.splitlines()
    frozen = cli("blueprint", "freeze", str(blueprint(tmp_path, ["hello=1.*", "microshift"])), "--repos",
                 str(repo_file), "--cache-dir", str(tmp_path / "cache"))
    assert frozen.returncode == 0, frozen.stderr
    assert 'version = "1.0-1.fixture.noarch"' in frozen.stdout
    assert 'version = "4.14.6-1.fixture.noarch"' in frozen.stdout


def test_failed_install_leaves_no_ref_no_tree_and_no_cache_entry(tmp_path: Path, repo_file: Path) -> None:
    proc = build(tmp_path, blueprint(tmp_path, ["file-clash-a", "file-clash-b"]), repo_file)
    assert_clean_failure(proc, tmp_path, "dnf could not install", "clash.txt")
    trees = tmp_path / "cache" / "trees"
    assert not trees.exists() or not any(trees.iterdir()), "a failed install must not leave a cached tree"
    assert not list((tmp_path / "cache").glob("dnf-*")), "dnf workspaces must be removed"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 6 MB tmpfs: too small for the example's packages (the suite runs as root, as CI does)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path: Path, repo_file: Path, small_disk: Path) -> None:
    proc = cli("build", str(EXAMPLE), "--var", "channel=stable", "--repos", str(repo_file),
               "--ostree-repo", str(tmp_path / "repo"), "--cache-dir", str(small_disk / "cache"))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "space" in lines[0], proc.stderr
    assert ostree.refs(tmp_path / "repo") == []
    assert not list((small_disk / "cache").glob("build-*"))
    assert not any((small_disk / "cache" / "trees").iterdir())
