"""Stage modules on small hand-made trees: behaviour and the errors a blueprint author sees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.blueprint.models import (
    Container,
    Directory,
    File,
    Firewall,
    FirewallServices,
    FirewallZone,
    Group,
    User,
)
from builder.stages import (
    StageError,
    containers,
    files,
    firewall,
    hostname,
    ostree_prep,
    passwd_preserve,
    timezone,
    users,
)
from builder.stages.accounts import Accounts


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nbin:x:1:1:bin:/bin:/sbin/nologin\n")
    (root / "etc/group").write_text("root:x:0:\nbin:x:1:\nwheel:x:10:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:::\nbin:::\nwheel:::\n")
    return root


def test_new_user_gets_the_next_free_ids_and_a_private_group(tree: Path) -> None:
    users.apply(tree, users.UsersOptions(users=(User("ann", password="$6$x$y", groups=("wheel",)),)))
    acc = Accounts.load(tree)
    ann = acc.user("ann")
    assert ann is not None and (ann.uid, ann.gid, ann.home, ann.shell) == (1000, 1000, "/home/ann", "/bin/bash")
    assert acc.group_entry("wheel").members == ["ann"]  # type: ignore[union-attr]
    assert acc.shadow["ann"].startswith("$6$x$y:")
    assert (tree / "home/ann").stat().st_mode & 0o777 == 0o700


def test_uid_already_taken_names_the_user_entry(tree: Path) -> None:
    with pytest.raises(StageError, match=r"user\[0\]\.uid: uid 1 of user \"ann\" is already used by \"bin\""):
        users.apply(tree, users.UsersOptions(users=(User("ann", uid=1),)))


def test_unknown_supplementary_group_names_the_index(tree: Path) -> None:
    with pytest.raises(StageError, match=r"customizations\.user\[0\]\.groups\[1\]: group \"nope\""):
        users.apply(tree, users.UsersOptions(users=(User("ann", groups=("wheel", "nope")),)))


def test_group_gid_clash_is_refused(tree: Path) -> None:
    with pytest.raises(StageError, match=r"customizations\.group\[0\]: gid 10 .* \"wheel\""):
        users.apply(tree, users.UsersOptions(groups=(Group("ops", gid=10),)))


def test_parent_ids_are_kept_for_users_created_later(tree: Path) -> None:
    passwd_preserve.apply(tree, passwd_preserve.PasswdPreserveOptions(
        passwd=("zed:x:1000:1000::/home/zed:/bin/bash",), group=("zed:x:1000:",)))
    users.apply(tree, users.UsersOptions(users=(User("ann"), User("zed"))))
    acc = Accounts.load(tree)
    assert acc.user("zed").uid == 1000  # type: ignore[union-attr]
    assert acc.user("ann").uid == 1001  # type: ignore[union-attr]


def test_files_refuse_relative_and_escaping_paths(tree: Path) -> None:
    for bad in ("etc/x", "/etc/../../x"):
        with pytest.raises(StageError, match=r"customizations\.files\[0\]\.path"):
            files.apply(tree, files.FilesOptions(files=(File(bad, data="x"),)))


def test_file_owner_must_exist_in_the_image(tree: Path) -> None:
    with pytest.raises(StageError, match=r"customizations\.files\[0\]\.user: user \"ghost\""):
        files.apply(tree, files.FilesOptions(files=(File("/etc/x", user="ghost", data="x"),)))


def test_directory_without_parent_needs_ensure_parents(tree: Path) -> None:
    with pytest.raises(StageError, match="ensure_parents"):
        files.apply(tree, files.FilesOptions(directories=(Directory("/srv/a/b"),)))
    files.apply(tree, files.FilesOptions(directories=(Directory("/srv/a/b", mode="0700", ensure_parents=True),)))
    assert (tree / "srv/a/b").stat().st_mode & 0o777 == 0o700


def test_bad_mode_is_named(tree: Path) -> None:
    with pytest.raises(StageError, match=r"customizations\.files\[0\]\.mode: mode \"rw\""):
        files.apply(tree, files.FilesOptions(files=(File("/etc/x", mode="rw", data="x"),)))


def _firewalld(tree: Path) -> None:
    zones = tree / "usr/lib/firewalld/zones"
    zones.mkdir(parents=True)
    (zones / "public.xml").write_text('<?xml version="1.0"?>\n<zone><service name="ssh"/></zone>\n')
    services = tree / "usr/lib/firewalld/services"
    services.mkdir(parents=True)
    (services / "http.xml").write_text("<service/>\n")


def test_firewall_disables_services_and_resolves_port_names(tree: Path) -> None:
    _firewalld(tree)
    fw = Firewall(ports=("https:tcp", "8000-8080:tcp"), services=FirewallServices(("http",), ("ssh",)),
                  zones=(FirewallZone("trusted", ("10.42.0.0/16",)),))
    firewall.apply(tree, firewall.FirewallOptions(fw))
    public = (tree / "etc/firewalld/zones/public.xml").read_text()
    assert '<port port="443" protocol="tcp" />' in public and '<service name="http" />' in public
    assert 'name="ssh"' not in public
    assert '<source address="10.42.0.0/16" />' in (tree / "etc/firewalld/zones/trusted.xml").read_text()


def test_firewall_errors_name_the_entry(tree: Path) -> None:
    _firewalld(tree)
    with pytest.raises(StageError, match=r"ports\[0\]: \"22/tcp\" is not a port"):
        firewall.apply(tree, firewall.FirewallOptions(Firewall(ports=("22/tcp",))))
    with pytest.raises(StageError, match=r"services\.enabled\[0\]: unknown firewalld service \"nope\""):
        firewall.apply(tree, firewall.FirewallOptions(Firewall(services=FirewallServices(("nope",)))))
    with pytest.raises(StageError, match=r"zones\[0\]\.sources\[0\]"):
        firewall.apply(tree, firewall.FirewallOptions(Firewall(zones=(FirewallZone("trusted", ("10.0.0.0/99",)),))))


def test_host_settings_validate_names(tree: Path) -> None:
    with pytest.raises(StageError, match=r"customizations\.hostname"):
        hostname.apply(tree, hostname.HostnameOptions("bad_name!"))
    with pytest.raises(StageError, match=r"unknown time zone \"Mars/Olympus\""):
        timezone.apply(tree, timezone.TimezoneOptions("Mars/Olympus"))
    timezone.apply(tree, timezone.TimezoneOptions("UTC"))
    hostname.apply(tree, hostname.HostnameOptions("edge"))
    assert (tree / "etc/hostname").read_text() == "edge\n"
    assert os.readlink(tree / "etc/localtime") == "../usr/share/zoneinfo/UTC"


def test_remote_container_sources_are_refused(tree: Path) -> None:
    with pytest.raises(StageError, match=r"containers\[0\]\.source: \"docker://quay.io/x\" is not a local source"):
        containers.apply(tree, containers.ContainersOptions((Container("docker://quay.io/x"),)))


def test_ostree_prep_needs_exactly_one_kernel_with_an_initramfs(tree: Path) -> None:
    with pytest.raises(StageError, match="no kernel in the tree"):
        ostree_prep.apply(tree, ostree_prep.OstreePrepOptions())
    for kver in ("1.0", "2.0"):
        (tree / "usr/lib/modules" / kver).mkdir(parents=True)
        (tree / "usr/lib/modules" / kver / "vmlinuz").write_text("k")
    with pytest.raises(StageError, match="several kernels"):
        ostree_prep.apply(tree, ostree_prep.OstreePrepOptions())
    (tree / "usr/lib/modules/2.0/vmlinuz").unlink()
    with pytest.raises(StageError, match="no initramfs for kernel 1.0"):
        ostree_prep.apply(tree, ostree_prep.OstreePrepOptions())


def test_payload_ships_hash_checked_bytecode_for_the_images_python(tmp_path: Path) -> None:
    """/usr is read-only on a device: without shipped .pyc files every agent run compiles from source."""
    import importlib.util
    import sys

    from builder.stages import fieldshift

    root = tmp_path / "tree"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin" / f"python{sys.version_info.major}.{sys.version_info.minor}").touch()
    fieldshift.install_payload(root, agent=True, greenboot=True)
    agent = root / fieldshift.PYTHON_DIR / "updater" / "agent.py"
    pyc = Path(importlib.util.cache_from_source(str(agent)))
    assert pyc.is_file()
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11  # PEP 552: hash-based, checked
    assert b"/usr/lib/fieldshift/python/updater/agent.py" in pyc.read_bytes()  # the device's path in tracebacks

    other = tmp_path / "other"
    (other / "usr/bin").mkdir(parents=True)
    (other / "usr/bin/python3.0").touch()  # an image whose Python is not the builder's: runs from source
    fieldshift.install_payload(other, agent=True, greenboot=False)
    assert not list((other / fieldshift.PYTHON_DIR).rglob("*.pyc"))


def test_distro_bytecode_stays_valid_in_an_ostree_checkout(tmp_path: Path) -> None:
    """ostree checks every file out with mtime 0: timestamp .pyc files must record 0 or Python recompiles."""
    import py_compile
    import subprocess
    import sys

    def imports_from_bytecode(rootfs: Path) -> tuple[bool, str]:
        repo = tmp_path / f"repo-{rootfs.name}"
        subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare-user"], check=True)
        subprocess.run(["ostree", "commit", f"--repo={repo}", "--branch=t", f"--tree=dir={rootfs}"],
                       check=True, capture_output=True)
        out = tmp_path / f"co-{rootfs.name}"
        subprocess.run(["ostree", "checkout", f"--repo={repo}", "-U", "t", str(out)], check=True)
        lib = out / "usr/lib/py"
        assert (lib / "distmod.py").stat().st_mtime == 0  # what a deployment looks like
        done = subprocess.run([sys.executable, "-v", "-B", "-c", "import distmod"], cwd=tmp_path,
                              env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True)
        return "matches" in "".join(x for x in done.stderr.splitlines(True) if "distmod" in x), done.stderr

    for name, prep in (("stock", False), ("prepped", True)):
        root = tmp_path / name
        lib = root / "usr/lib/py"
        lib.mkdir(parents=True)
        (lib / "distmod.py").write_text("VALUE = 1\n")
        os.utime(lib / "distmod.py", (1_700_000_000, 1_700_000_000))  # the package's build time
        py_compile.compile(str(lib / "distmod.py"), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
        if prep:
            assert ostree_prep.zero_pyc_mtimes(root) == 1
            assert ostree_prep.zero_pyc_mtimes(root) == 0  # idempotent
        used, log = imports_from_bytecode(root)
        assert used == prep, log[-2000:]
