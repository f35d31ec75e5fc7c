"""Disk images and their parts, checked with the real tools and no VM: ostree admin, sfdisk, mtools, debugfs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder import ostree
from builder.backends import MissingPackageError, PackageRequest, PackageSpec
from builder.backends.apt import AptBackend, parse_print_uris, split_version
from builder.disk import blsmenu, gpt, sysroot
from builder.image import ImageError, ImageSpec, build_image, from_build
from greenboot.grubmenu import counting_fragment
from tests.vm.lab import apt_sources

REF = "debian/12/x86_64/edge"


def _commit(repo: Path, tree: Path, version: str) -> str:
    (tree / "usr/lib/modules/6.1.0-test").mkdir(parents=True, exist_ok=True)
    (tree / "usr/lib/modules/6.1.0-test/vmlinuz").write_bytes(b"kernel " * 100)
    (tree / "usr/lib/modules/6.1.0-test/initramfs.img").write_bytes(b"initramfs " * 100)
    (tree / "usr/etc").mkdir(parents=True, exist_ok=True)
    (tree / "usr/etc/os-release").write_text(f'NAME="Test"\nID=test\nPRETTY_NAME="Test {version}"\n')
    ostree.ensure_repo(repo)
    return ostree.commit(repo, tree, ref=REF, subject=version, metadata={"version": version}, timestamp=0)


@pytest.fixture()
def commits(tmp_path: Path) -> tuple[Path, str, str]:
    repo = tmp_path / "repo"
    tree = tmp_path / "tree"
    v1 = _commit(repo, tree, "1.0.0")
    (tree / "usr/share").mkdir(parents=True)
    (tree / "usr/share/new-in-v2").write_text("2\n")
    v2 = _commit(repo, tree, "2.0.0")
    return repo, v1, v2


def _deployment(repo: Path, commit: str) -> sysroot.Deployment:
    return sysroot.Deployment(repo, commit, REF, "debian", "fieldshift", "http://10.0.2.2:8080/r/repo",
                              ("root=LABEL=fs-root", "rw", "console=ttyS0,115200"))


def test_ostree_writes_a_menu_with_the_new_deployment_first_and_kernel_paths_under_boot(
    tmp_path: Path, commits: tuple[Path, str, str]
) -> None:
    repo, v1, v2 = commits
    root = tmp_path / "sysroot"
    sysroot.deploy(root, _deployment(repo, v1), tmp_path)
    sysroot.deploy(root, _deployment(repo, v2), tmp_path)  # what an update does: two deployments

    menu = (root / "boot/loader/grub.cfg").read_text()
    titles = [line for line in menu.splitlines() if line.startswith("menuentry ")]
    assert len(titles) == 2
    assert "2.0.0" in titles[0] and "1.0.0" in titles[1], titles
    assert "  linux /boot/ostree/debian-" in menu and "ostree=/ostree/boot." in menu
    assert counting_fragment().splitlines()[3] in menu  # greenboot's counting runs before the entries
    # The menu sits in loader.N next to its entries: ostree swaps both with one symlink.
    assert (root / "boot/loader").is_symlink()
    assert (root / "boot/loader").resolve() == (root / "boot/loader/grub.cfg").resolve().parent
    check = subprocess.run(["grub-script-check", str(root / "boot/loader/grub.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    config = (root / "ostree/repo/config").read_text()
    assert "bootloader=grub2" in config and "url=http://10.0.2.2:8080/r/repo" in config
    assert sysroot.origin_refspec(sorted((root / "ostree/deploy/debian/deploy").glob(f"{v2}.*"))[0]) == (
        f"fieldshift:{REF}"
    )
    sysroot.remove(root)
    assert not root.exists()


def test_device_menu_program_imports_greenboot_from_the_payload_directory() -> None:
    text = blsmenu.program_text("/usr/bin/python3", path=("/usr/lib/fieldshift/python",))
    assert text.startswith("#!/usr/bin/python3\n")
    assert "sys.path[:0] = ['/usr/lib/fieldshift/python']" in text
    assert text.index("sys.path[:0]") < text.index("from greenboot import")
    compile(text, "ostree-grub-menu", "exec")


def _partition(disk: Path, index: int, dest: Path) -> None:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], check=True, capture_output=True).stdout)
    part = table["partitiontable"]["partitions"][index]
    with disk.open("rb") as src, dest.open("wb") as out:
        src.seek(part["start"] * 512)
        out.write(src.read(part["size"] * 512))


@pytest.mark.slow
def test_raw_disk_has_gpt_with_esp_grub_and_an_ext4_root_holding_the_deployment(
    tmp_path: Path, commits: tuple[Path, str, str]
) -> None:
    repo, v1, _ = commits
    spec = ImageSpec(repo=repo, commit=v1, ref=REF, image_type="raw", remote_url="http://10.0.2.2:8080/r/repo",
                     kargs=("quiet",), free_space=16 * 1024 * 1024)
    result = build_image(spec, tmp_path / "disk.raw")

    assert result.kargs[-1] == "quiet" and "console=ttyS0,115200" in result.kargs
    table = json.loads(subprocess.run(["sfdisk", "--json", str(result.path)], check=True,
                                      capture_output=True).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    assert [p["type"] for p in table["partitions"]] == [gpt.ESP_TYPE, gpt.ROOT_X86_64_TYPE]
    esp, root = tmp_path / "esp.img", tmp_path / "root.img"
    _partition(result.path, 0, esp)
    _partition(result.path, 1, root)
    listing = subprocess.run(["mdir", "-i", str(esp), "-b", "::/EFI/BOOT"], check=True, capture_output=True,
                             text=True).stdout
    assert "BOOTX64.EFI" in listing
    grubenv = subprocess.run(["debugfs", "-R", "cat /boot/grub/grubenv", str(root)], check=True,
                             capture_output=True).stdout
    assert len(grubenv) == 1024 and grubenv.startswith(b"# GRUB Environment Block")
    menu = subprocess.run(["debugfs", "-R", "cat /boot/loader/grub.cfg", str(root)], check=True,
                          capture_output=True, text=True).stdout
    assert "quiet" in menu and "1.0.0" in menu
    label = subprocess.run(["e2label", str(root)], check=True, capture_output=True, text=True).stdout.strip()
    assert label == "fs-root"
    assert not list(tmp_path.glob("fieldshift-image-*")), "scratch directory left behind"


@pytest.mark.slow
def test_qcow2_disk_is_a_qcow2_file(tmp_path: Path, commits: tuple[Path, str, str]) -> None:
    repo, v1, _ = commits
    result = build_image(ImageSpec(repo=repo, commit=v1, ref=REF, image_type="qcow2", free_space=1024 * 1024),
                         tmp_path / "disk.qcow2")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(result.path)], check=True,
                                     capture_output=True).stdout)
    assert info["format"] == "qcow2"


def test_unknown_image_type_is_refused_and_nothing_is_written(tmp_path: Path, commits: tuple[Path, str, str]) -> None:
    repo, v1, _ = commits
    with pytest.raises(ImageError, match='unknown image type "vmdk"'):
        build_image(ImageSpec(repo=repo, commit=v1, ref=REF, image_type="vmdk"), tmp_path / "out" / "disk.vmdk")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_disk_for_a_fedora_family_blueprint_is_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match='distro family is "rhel"'):
        from_build(repo=tmp_path, ref="rhel/9/x86_64/edge", checksum="0" * 64, image_type="raw", family="rhel",
                   grubenv_path="/boot/grub2/grubenv", release_url=None, kargs=(), output_dir=tmp_path)


def test_apt_print_uris_lines_become_exact_packages_with_epochs_and_sha256() -> None:
    out = (
        "'http://mirror/pool/main/s/shadow/passwd_1%3a4.13%2bdfsg1-1_amd64.deb' passwd_1%3a4.13+dfsg1-1_amd64.deb "
        "1000 SHA256:abcd\n"
        "'http://mirror/pool/main/m/mawk/mawk_1.3.4.20200120-3.1_amd64.deb' mawk_1.3.4.20200120-3.1_amd64.deb "
        "119144 SHA256:ef01\n"
        "not a package line\n"
    )
    passwd, mawk = parse_print_uris(out)
    assert (passwd.name, passwd.epoch, passwd.version, passwd.release) == ("passwd", 1, "4.13+dfsg1", "1")
    assert passwd.checksum == "sha256:abcd"
    assert (mawk.name, mawk.version, mawk.release, mawk.arch) == ("mawk", "1.3.4.20200120", "3.1", "amd64")
    assert split_version("2.0") == (0, "2.0", "")


@pytest.mark.slow
def test_apt_resolve_names_the_blueprint_entry_of_a_missing_package(tmp_path: Path) -> None:
    request = PackageRequest(
        specs=(PackageSpec("systemd-sysv", "distro base"), PackageSpec("no-such-package-fs", 'packages[2] "x"')),
        repo_files=(apt_sources(),), distro="debian-12", releasever="12", arch="x86_64", cache_dir=tmp_path,
    )
    with pytest.raises(MissingPackageError, match=r'no-such-package-fs \(asked for by packages\[2\] "x"\)'):
        AptBackend().resolve(request)
