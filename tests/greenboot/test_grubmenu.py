"""The Debian GRUB pieces: a counting fragment GRUB parses, and a menu made from ostree's BLS entries."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from greenboot import grubmenu
from greenboot.config import MAX_ATTEMPTS_LIMIT
from greenboot.grubmenu import GrubMenuError
from tests.sim.firmware import editenv, editenv_list, menu_entries, run_grub
from tests.sim.sysroot import Sysroot, clone

DATA = Path(grubmenu.__file__).parent / "data" / "grub"


def grub_script_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["grub-script-check", str(path)], capture_output=True, text=True)


def test_counting_fragment_is_valid_grub_script_without_increment_or_blscfg(tmp_path: Path) -> None:
    path = tmp_path / "fragment.cfg"
    path.write_text(grubmenu.counting_fragment())
    result = grub_script_check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert "decrement" not in code and "increment" not in code and "blscfg" not in code
    assert "save_env boot_counter" in code and "save_env boot_success" in code


def test_a_broken_fragment_would_be_caught_by_grub_script_check(tmp_path: Path) -> None:
    path = tmp_path / "broken.cfg"
    path.write_text(grubmenu.counting_fragment().replace("  fi\n", "", 1))
    assert grub_script_check(path).returncode != 0


HEADER = "if [ -s $prefix/grubenv ]; then\n  load_env\nfi\nset default=0\n"


def grub_boot(tmp_path: Path, **values: str) -> tuple[str, dict[str, str]]:
    """One boot of real GRUB over the fragment: ($default, grubenv afterwards)."""
    grubenv = tmp_path / "grubenv"
    grubenv.unlink(missing_ok=True)
    editenv(grubenv, "create")
    if values:
        editenv(grubenv, "set", *(f"{k}={v}" for k, v in values.items()))
    result = run_grub(HEADER + grubmenu.counting_fragment(), grubenv, echo="default=${default}")
    return result["default"], editenv_list(grubenv)


@pytest.mark.parametrize("counter", ["1", "2", "3"])
def test_real_grub_counts_an_armed_counter_down_and_boots_the_default(tmp_path: Path, counter: str) -> None:
    default, env = grub_boot(tmp_path, boot_counter=counter, boot_success="0")
    assert default == "0"
    assert env == {"boot_counter": str(int(counter) - 1), "boot_success": "0"}


@pytest.mark.parametrize("counter", ["0", "-1", "101", "many"])
def test_real_grub_falls_back_to_entry_1_when_the_counter_is_exhausted_or_unknown(tmp_path: Path, counter: str) -> None:
    default, env = grub_boot(tmp_path, boot_counter=counter, boot_success="0")
    assert default == "1"
    assert env == {"boot_counter": "-1", "boot_success": "0"}


def test_real_grub_leaves_the_counter_alone_after_a_green_boot_and_resets_success(tmp_path: Path) -> None:
    default, env = grub_boot(tmp_path, boot_counter="2", boot_success="1")
    assert (default, env) == ("0", {"boot_counter": "2", "boot_success": "0"})
    default, env = grub_boot(tmp_path, boot_success="1")
    assert (default, env) == ("0", {"boot_success": "0"})


def test_real_grub_output_is_byte_compatible_with_grub_editenv(tmp_path: Path) -> None:
    """What GRUB's save_env wrote is exactly what grub-editenv writes for the same values."""
    grub_boot(tmp_path, boot_counter="3", boot_success="0")
    theirs = tmp_path / "theirs"
    editenv(theirs, "create")
    editenv(theirs, "set", "boot_counter=2", "boot_success=0")
    assert (tmp_path / "grubenv").read_bytes() == theirs.read_bytes()


def test_the_ladder_counts_every_armed_value_down_by_one() -> None:
    pairs = re.findall(r'= "(\d+)" \]; then set fieldshift_next=(-?\d+); fi', grubmenu.counting_fragment())
    assert [(int(a), int(b)) for a, b in pairs] == [(n, n - 1) for n in range(1, MAX_ATTEMPTS_LIMIT + 1)]


@pytest.mark.parametrize("counter", ["1", "50", "51", "99", "100"])
def test_real_grub_handles_the_whole_ladder(tmp_path: Path, counter: str) -> None:
    """GRUB 2.06 misparses long elif chains silently; the flat ladder must work up to the limit."""
    default, env = grub_boot(tmp_path, boot_counter=counter, boot_success="0")
    assert (default, env["boot_counter"]) == ("0", str(int(counter) - 1))


def test_shipped_fragment_and_grub_d_script_match_the_generator() -> None:
    assert (DATA / "fieldshift-counting.cfg").read_text() == grubmenu.counting_fragment()
    out = subprocess.run(["sh", str(DATA / "08_fieldshift_counting")], capture_output=True, text=True, check=True)
    assert out.stdout == grubmenu.counting_fragment()


def test_menu_lists_the_default_deployment_first_and_the_rollback_second(base_sysroot: Sysroot, tmp_path: Path) -> None:
    out = tmp_path / "grub.cfg"
    grubmenu.write_menu(base_sysroot.path, out)
    assert grub_script_check(out).returncode == 0
    entries = menu_entries(out)
    assert [e.title for e in entries] == ["Field OS 2 (ostree:0)", "Field OS 1 (ostree:1)"]
    entries_dir = base_sysroot.path / "boot/loader/entries"
    bls = {p.read_text().split("\noptions ")[1].split("\n")[0] for p in entries_dir.iterdir()}
    assert {e.options for e in entries} == bls
    for entry in entries:
        assert (base_sysroot.path / "boot" / entry.linux.lstrip("/")).is_file()
        assert (base_sysroot.path / "boot" / entry.initrd.lstrip("/")).is_file()
    text = out.read_text()
    assert text.startswith(grubmenu.MARKER)
    assert text.index("load_env") < text.index("save_env boot_counter") < text.index("menuentry")


def test_boot_prefix_is_prepended_when_boot_is_not_a_partition(base_sysroot: Sysroot, tmp_path: Path) -> None:
    out = tmp_path / "grub.cfg"
    grubmenu.write_menu(base_sysroot.path, out, boot_prefix="/boot")
    assert all(e.linux.startswith("/boot/ostree/") for e in menu_entries(out))


def test_titles_with_quotes_are_quoted_for_grub(tmp_path: Path, base_sysroot: Sysroot) -> None:
    sr = clone(base_sysroot, tmp_path / "root")
    entry = next((sr.path / "boot/loader/entries").iterdir())
    entry.write_text(entry.read_text().replace("title Field OS", "title Field OS 'quoted' $x"))
    out = tmp_path / "grub.cfg"
    grubmenu.write_menu(sr.path, out)
    assert grub_script_check(out).returncode == 0
    assert "menuentry 'Field OS '\\''quoted'\\'' $x" in out.read_text()


def test_no_entries_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "grub.cfg"
    with pytest.raises(GrubMenuError, match="no ostree boot entries"):
        grubmenu.write_menu(tmp_path, out)
    assert not out.exists()


def test_cli_grub_menu_writes_boot_grub_grub_cfg(base_sysroot: Sysroot, tmp_path: Path) -> None:
    from tests.greenboot.conftest import Cli

    sr = clone(base_sysroot, tmp_path / "root")
    result = Cli(sr.path)("grub-menu")
    assert result.returncode == 0, result.stderr
    assert len(menu_entries(sr.path / "boot" / "grub" / "grub.cfg")) == 2
