"""The compose pipeline against the fixture repository, with real dnf and real ostree."""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from builder import ostree
from tests.compose.conftest import (
    ALICE_KEY,
    EXAMPLE,
    Built,
    cli,
    ostree_cat,
    ostree_ls,
    run_build,
    write_full_blueprint,
)

pytestmark = pytest.mark.slow
KVER = "5.14.0-362.8.1.fixture.x86_64"


def entry(built: Built, path: str) -> ostree.Entry:
    (e,) = [x for x in ostree.ls(built.repo, built.result.commit, path) if x.path == path] or [None]
    assert e is not None, f"{path} missing from the commit"
    return e


# --- layout: what rpm-ostree would have committed ------------------------------------------------

def test_example_commit_has_rpm_ostree_toplevel_symlinks(example: Built) -> None:
    links = {e.path: e.target for e in ostree.ls(example.repo, example.result.commit, "/") if e.kind == "l"}
    assert links["/home"] == "var/home"
    assert links["/root"] == "var/roothome"
    assert links["/opt"] == "var/opt" and links["/srv"] == "var/srv" and links["/mnt"] == "var/mnt"
    assert links["/media"] == "run/media"
    assert links["/ostree"] == "sysroot/ostree"
    assert links["/bin"] == "usr/bin"
    assert entry(example, "/usr/local").target == "../var/usrlocal"
    assert entry(example, "/tmp").mode == 0o1777
    assert not ostree.exists(example.repo, example.result.commit, "/etc")
    assert ostree.exists(example.repo, example.result.commit, "/usr/etc/os-release") or ostree.exists(
        example.repo, example.result.commit, "/usr/etc/passwd")


def test_example_var_is_empty_and_recreated_by_tmpfiles(example: Built) -> None:
    assert ostree.ls(example.repo, example.result.commit, "/var") == [entry(example, "/var")]
    autovar = ostree_cat(example, "/usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf")
    assert "d /var/lib/microshift 0700 root root - -" in autovar
    assert "L /var/lib/rpm - - - - ../../usr/share/rpm" in autovar
    assert "d /var/home 0755 root root - -" in autovar
    assert "L /var/run - - - - ../run" in autovar
    assert "dnf" not in autovar


def test_kernel_and_initramfs_live_in_usr_lib_modules_and_boot_is_empty(example: Built) -> None:
    assert entry(example, f"/usr/lib/modules/{KVER}/vmlinuz").kind == "-"
    assert entry(example, f"/usr/lib/modules/{KVER}/initramfs.img").kind == "-"
    assert ostree.ls(example.repo, example.result.commit, "/boot") == [entry(example, "/boot")]
    assert example.result.kernel == KVER


def test_rpmdb_is_in_usr_share_rpm_with_the_dbpath_macro(example: Built) -> None:
    assert entry(example, "/usr/share/rpm/rpmdb.sqlite").size > 0
    assert ostree_cat(example, "/usr/lib/rpm/macros.d/macros.rpm-ostree").strip() == "%_dbpath /usr/share/rpm"
    assert not ostree.exists(example.repo, example.result.commit, "/usr/share/rpm/rpmdb.sqlite-shm")


def test_system_accounts_move_to_usr_lib_with_altfiles(example: Built) -> None:
    etc_passwd = ostree_cat(example, "/usr/etc/passwd")
    lib_passwd = ostree_cat(example, "/usr/lib/passwd")
    assert etc_passwd.startswith("root:x:0:0:")
    assert "bin:x:1:1:" in lib_passwd and "bin:x:1:1:" not in etc_passwd
    assert re.search(r"^sshd:x:74:74:", lib_passwd, re.M)  # from sysusers.d of openssh-server
    nss = ostree_cat(example, "/usr/etc/nsswitch.conf")
    assert "passwd: files altfiles systemd" in nss and "group: files altfiles systemd" in nss
    assert entry(example, "/usr/etc/shadow").mode == 0


def test_machine_id_is_empty(example: Built) -> None:
    assert entry(example, "/usr/etc/machine-id").size == 0


# --- customizations of the example ---------------------------------------------------------------

def test_services_are_enabled_through_their_install_sections(example: Built) -> None:
    wants = {e.path.rsplit("/", 1)[1]: e.target
             for e in ostree.ls(example.repo, example.result.commit, "/usr/etc/systemd/system/multi-user.target.wants")
             if e.kind == "l"}
    assert wants["microshift.service"] == "/usr/lib/systemd/system/microshift.service"
    assert "firewalld.service" in wants
    alias = entry(example, "/usr/etc/systemd/system/dbus-org.fedoraproject.FirewallD1.service")
    assert alias.target.endswith("firewalld.service")
    assert entry(example, "/usr/etc/systemd/system/grub-boot-success.timer").target == "/dev/null"


def test_firewall_ports_and_trusted_sources_are_zone_xml(example: Built) -> None:
    public = ostree_cat(example, "/usr/etc/firewalld/zones/public.xml")
    assert '<port port="6443" protocol="tcp" />' in public
    assert '<port port="30000-32767" protocol="udp" />' in public
    assert '<service name="ssh" />' in public  # packaged zone content is kept
    trusted = ostree_cat(example, "/usr/etc/firewalld/zones/trusted.xml")
    assert '<source address="10.42.0.0/16" />' in trusted and '<source address="169.254.169.1" />' in trusted
    assert 'target="ACCEPT"' in trusted


def test_pull_secret_is_root_only(example: Built) -> None:
    e = entry(example, "/usr/etc/crio/openshift-pull-secret")
    assert (e.mode, e.uid, e.gid) == (0o600, 0, 0)
    assert json.loads(ostree_cat(example, "/usr/etc/crio/openshift-pull-secret")) == {"auths": {}}


def test_fieldshift_settings_and_payload_are_installed(example: Built) -> None:
    assert 'channel = "stable"' in ostree_cat(example, "/usr/lib/fieldshift/agent.d/40-release.toml")
    assert 'reboot_strategy = "immediate"' in ostree_cat(example, "/usr/lib/fieldshift/agent.d/50-blueprint.toml")
    assert "GREENBOOT_MAX_BOOT_ATTEMPTS=3" in ostree_cat(example, "/usr/etc/greenboot/greenboot.conf")
    assert entry(example, "/usr/bin/fieldshift-agent").mode == 0o755
    assert "from updater.cli import main" in ostree_cat(example, "/usr/bin/fieldshift-agent")
    assert entry(example, "/usr/lib/fieldshift/python/updater/catalog.py").kind == "-"


def test_commit_metadata_matches_rpm_ostree(example: Built) -> None:
    r, c = example.repo, example.result.commit
    assert ostree.metadata_value(r, c, "version") == "1.0.0"
    assert ostree.metadata_value(r, c, "rpmostree.inputhash") == example.result.inputhash
    pkgs = ostree.metadata_value(r, c, "rpmostree.rpmdb.pkglist")
    assert ("microshift", "0", "4.14.6", "1.fixture", "noarch") in pkgs
    assert {p[0] for p in pkgs} >= {"microshift-greenboot", "firewalld", "kernel", "setup", "ostree"}
    digest = ostree.metadata_value(r, c, "fieldshift.blueprint-digest")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert example.result.ref == "rhel/9/x86_64/edge"
    assert ostree.rev_parse(r, "rhel/9/x86_64/edge") == c
    assert ostree.content_checksum(r, c) == ostree.show(r, c).content_checksum == example.result.content_checksum


def test_outputs_are_commit_tar_and_kickstart(example: Built) -> None:
    with tarfile.open(example.output / "commit.tar") as tar:
        names = tar.getnames()
        compose_json = json.loads(tar.extractfile("compose.json").read())  # type: ignore[union-attr]
    assert "repo/config" in names and any(n.startswith("repo/objects/") for n in names)
    assert compose_json["ostree-commit"] == example.result.commit
    assert compose_json["ref"] == "rhel/9/x86_64/edge"
    assert compose_json["rpm-ostree-inputhash"] == example.result.inputhash
    ks = (example.output / "kickstart.ks").read_text()
    assert "ostreesetup --nogpg --osname=rhel-edge --remote=rhel-edge --url=file:///run/install/repo/ostree/repo " \
           "--ref=rhel/9/x86_64/edge" in ks


# --- the full blueprint --------------------------------------------------------------------------

def test_users_get_passwd_shadow_groups_and_a_home_with_authorized_keys(full: Built) -> None:
    passwd = ostree_cat(full, "/usr/etc/passwd")
    assert re.search(r"^alice:x:1000:1000:first user:/home/alice:/bin/bash$", passwd, re.M)
    assert re.search(r"^bob:x:1001:1001::/home/bob:/bin/bash$", passwd, re.M)
    group = ostree_cat(full, "/usr/etc/group")
    assert "operators:x:1500:alice" in group
    assert re.search(r"^wheel:x:10:alice$", group, re.M)  # groups with members stay in /etc
    # shadow is 0000 and readable only through ostree cat
    shadow = ostree_cat(full, "/usr/etc/shadow")
    assert re.search(r"^alice:\$6\$saltsalt\$", shadow, re.M)
    autovar = ostree_cat(full, "/usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf")
    assert "d /var/home/alice 0700 alice alice - -" in autovar
    assert "d /var/home/alice/.ssh 0700 alice alice - -" in autovar
    key_line = next(x for x in autovar.splitlines() if x.startswith("f /var/home/alice/.ssh/authorized_keys"))
    assert key_line.startswith("f /var/home/alice/.ssh/authorized_keys 0600 alice alice - ssh-ed25519")
    assert ALICE_KEY.split()[1] in key_line


def test_host_settings_are_written(full: Built) -> None:
    assert ostree_cat(full, "/usr/etc/hostname") == "edge-01.example.com\n"
    assert entry(full, "/usr/etc/localtime").target == "../usr/share/zoneinfo/Europe/Berlin"
    chrony = ostree_cat(full, "/usr/etc/chrony.conf")
    assert chrony.startswith("server ntp1.example.com iburst\nserver ntp2.example.com iburst\n")
    assert "pool " not in chrony
    assert ostree_cat(full, "/usr/etc/locale.conf") == "LANG=de_DE.UTF-8\n"
    assert "KEYMAP=de" in ostree_cat(full, "/usr/etc/vconsole.conf")


def test_files_and_directories_get_owner_and_mode(full: Built) -> None:
    d = entry(full, "/usr/etc/edge/app")
    f = entry(full, "/usr/etc/edge/app/settings.conf")
    assert (d.kind, d.mode, d.uid, d.gid) == ("d", 0o750, 1000, 1500)
    assert (f.mode, f.uid, f.gid) == (0o640, 1000, 1500)
    assert ostree_cat(full, "/usr/etc/edge/app/settings.conf") == "level=1"


def test_disabled_and_enabled_services(full: Built) -> None:
    wants = [e.path for e in ostree.ls(full.repo, full.result.commit, "/usr/etc/systemd/system/multi-user.target.wants")
             if e.kind == "l"]
    assert any(p.endswith("/chronyd.service") for p in wants) and any(p.endswith("/sshd.service") for p in wants)
    debug_shell = "/usr/etc/systemd/system/sysinit.target.wants/debug-shell.service"
    assert not ostree.exists(full.repo, full.result.commit, debug_shell)


def test_repositories_keys_and_microshift_config(full: Built) -> None:
    repo = ostree_cat(full, "/usr/etc/yum.repos.d/edge-extras.repo")
    assert "[edge-extras]" in repo and "baseurl=http://127.0.0.1:9/extras" in repo and "gpgcheck=0" in repo
    assert ostree.metadata_value(full.repo, full.result.commit, "fieldshift.kargs") == []
    assert "TEST" in ostree_cat(full, "/usr/lib/fieldshift/keys/catalog.pub")
    release = ostree_cat(full, "/usr/lib/fieldshift/agent.d/40-release.toml")
    assert '"/usr/lib/fieldshift/keys/catalog.pub"' in release and 'channel = "beta"' in release
    config = ostree_cat(full, "/usr/etc/microshift/config.d/50-fieldshift.yaml")
    assert "baseDomain: full.example.com" in config


def test_container_is_copied_into_the_additional_image_store(full: Built) -> None:
    images = json.loads(ostree_cat(full, "/usr/lib/containers/storage/vfs-images/images.json"))
    assert any("localhost/hello:1.0" in img.get("names", []) for img in images)


# --- speed and repeatability ---------------------------------------------------------------------

def test_unchanged_inputs_reuse_the_existing_commit(example: Built, repo_file: Path) -> None:
    again = run_build(repo_file, EXAMPLE, example.repo, example.cache, payload=example.payload)
    assert again.reused and again.commit == example.result.commit
    assert ostree.refs(example.repo) == ["rhel/9/x86_64/edge"]


def test_customization_only_change_uses_the_tree_cache_and_chains_the_parent(full: Built, repo_file: Path,
                                                                           tmp_path: Path) -> None:
    bp = write_full_blueprint(tmp_path / "bp", setting="level=2")
    result = run_build(repo_file, bp, full.repo, full.cache, variables={}, payload=full.payload)
    assert result.tree_cache_hit and not result.reused
    assert result.parent == full.result.commit
    assert subprocess.run(["ostree", "cat", f"--repo={full.repo}", result.commit, "/usr/etc/edge/app/settings.conf"],
                          capture_output=True, text=True, check=True).stdout == "level=2"
    assert not list(full.cache.glob("build-*")), "work trees must be removed after a build"


def test_two_cold_builds_give_the_same_commit(example: Built, repo_file: Path, tmp_path: Path) -> None:
    again = run_build(repo_file, EXAMPLE, tmp_path / "repo", tmp_path / "cache", payload=example.payload)
    assert not again.tree_cache_hit
    assert again.content_checksum == example.result.content_checksum
    assert again.commit == example.result.commit


def test_parent_users_keep_their_ids_when_the_blueprint_reorders_them(full: Built, repo_file: Path,
                                                                      tmp_path: Path) -> None:
    # bob now comes first: without the parent's passwd he would get uid 1000 and alice 1001.
    bp = write_full_blueprint(tmp_path / "bp", first_user="bob", second_user="alice")
    result = run_build(repo_file, bp, full.repo, full.cache, variables={}, payload=full.payload, ref="test/uids",
                       parent=full.result.commit)
    passwd = subprocess.run(["ostree", "cat", f"--repo={full.repo}", result.commit, "/usr/etc/passwd"],
                            capture_output=True, text=True, check=True).stdout
    assert re.search(r"^alice:x:1000:1000:", passwd, re.M)
    assert re.search(r"^bob:x:1001:1001:", passwd, re.M)


def test_diff_reports_an_upgrade_between_two_commits(full: Built, repo_file: Path, tmp_path: Path) -> None:
    bp = write_full_blueprint(tmp_path / "bp", hello="2.*")
    result = run_build(repo_file, bp, full.repo, full.cache, variables={}, payload=full.payload, ref="test/upgrade",
                       parent=full.result.commit)
    proc = cli("diff", "--ostree-repo", str(full.repo), full.result.commit, result.commit, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["upgraded"] == [{"name": "hello", "arch": "noarch", "from": "1.0-1.fixture", "to": "2.0-1.fixture"}]
    assert report["added"] == [] and report["removed"] == [] and report["downgraded"] == []
    back = cli("diff", "--ostree-repo", str(full.repo), result.commit, full.result.commit)
    assert "Downgraded:\n  hello 2.0-1.fixture -> 1.0-1.fixture" in back.stdout


def test_keep_tree_leaves_the_prepared_tree_for_debugging(example: Built, repo_file: Path, tmp_path: Path) -> None:
    result = run_build(repo_file, EXAMPLE, tmp_path / "repo", example.cache, keep_tree=True,
                       payload=example.payload)
    assert result.kept_tree and (Path(result.kept_tree) / "usr/etc/passwd").exists()
    assert not (Path(result.kept_tree) / "etc").exists()
    # A kept tree is committed whole; the example was committed over the base commit of /usr: same tree.
    assert result.content_checksum == example.result.content_checksum


def test_ostree_ls_of_the_example_shows_no_build_leftovers(example: Built) -> None:
    listing = "\n".join(ostree_ls(example, "/usr/etc/dnf", "/usr/share/rpm") if ostree.exists(
        example.repo, example.result.commit, "/usr/etc/dnf") else ostree_ls(example, "/usr/share/rpm"))
    assert ".lock" not in listing


def test_commit_is_bound_to_its_ref_so_pulls_by_ref_verify(example: Built, tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    ostree.ensure_repo(dest)
    subprocess.run(["ostree", "pull-local", f"--repo={dest}", str(example.repo), "rhel/9/x86_64/edge"],
                   check=True, capture_output=True)
    assert ostree.rev_parse(dest, "rhel/9/x86_64/edge") == example.result.commit
    binding = ostree.metadata_value(example.repo, example.result.commit, "ostree.ref-binding")
    assert binding == ["rhel/9/x86_64/edge"]


def test_account_tool_backups_are_not_committed(example: Built) -> None:
    for name in ("passwd-", "group-", "shadow-", "gshadow-"):
        assert not ostree.exists(example.repo, example.result.commit, f"/usr/etc/{name}")


def test_build_command_reports_json_and_is_quiet_without_a_terminal(example: Built, repo_file: Path,
                                                                     tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    proc = cli("build", str(EXAMPLE), "--var", "channel=stable", "--repos", str(repo_file), "--ostree-repo",
               str(repo), "--cache-dir", str(example.cache), "--source-date-epoch", "1700000000", "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    report = json.loads(proc.stdout)
    assert report["ref"] == "rhel/9/x86_64/edge" and report["package_count"] == len(example.result.packages)
    assert report["commit"] == ostree.rev_parse(repo, "rhel/9/x86_64/edge") and not report["reused"]


def test_systemd_tmpfiles_recreates_home_and_authorized_keys_from_the_commit(full: Built, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group"):
        (root / "etc" / name).write_text(ostree_cat(full, f"/usr/etc/{name}") + ostree_cat(full, f"/usr/lib/{name}"))
    conf = tmp_path / "autovar.conf"
    conf.write_text(ostree_cat(full, "/usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf"))
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(conf)], check=True, capture_output=True)
    keys = root / "var/home/alice/.ssh/authorized_keys"
    assert keys.read_text() == ALICE_KEY + "\n"
    assert (keys.stat().st_mode & 0o777, keys.stat().st_uid) == (0o600, 1000)
    assert (root / "var/lib/rpm").resolve() == (root / "usr/share/rpm").resolve()


def test_outputs_of_an_unchanged_build_are_kept(example: Built, repo_file: Path) -> None:
    tar = example.output / "commit.tar"
    before = tar.stat().st_mtime_ns
    again = run_build(repo_file, EXAMPLE, example.repo, example.cache, example.output, payload=example.payload)
    assert again.reused and again.outputs == (str(tar), str(example.output / "kickstart.ks"))
    assert tar.stat().st_mtime_ns == before


def test_files_are_labeled_with_the_image_selinux_policy(example: Built) -> None:
    listing = subprocess.run(["ostree", "ls", "-X", f"--repo={example.repo}", example.result.commit,
                              "/usr/bin/microshift", "/usr/etc/crio/openshift-pull-secret"],
                             check=True, capture_output=True, text=True).stdout
    assert "system_u:object_r:kubelet_exec_t:s0" in listing
    # /usr/etc carries labels of its own paths: ostree relabels it as /etc when it deploys (merge_configuration).
    assert listing.count("security.selinux") == 2
