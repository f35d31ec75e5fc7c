"""grubenv files we write are byte-identical to grub-editenv's, and we read everything it writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenboot import bootcount
from greenboot.grubenv import BLOCK_SIZE, GrubEnv, GrubEnvError
from tests.sim.firmware import editenv, editenv_list


def grub_editenv(path: Path, *args: str) -> None:
    subprocess.run(["grub-editenv", str(path), *args], check=True, capture_output=True)


def test_new_file_is_byte_identical_to_grub_editenv_create(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    GrubEnv(ours).create()
    grub_editenv(theirs, "create")
    assert ours.read_bytes() == theirs.read_bytes()
    assert len(ours.read_bytes()) == BLOCK_SIZE


def test_values_with_backslashes_and_newlines_round_trip_through_grub_editenv(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    GrubEnv(path).set(a="back\\slash", b="two\nlines", c="")
    assert editenv_list(path)["a"] == "back\\slash"
    grub_editenv(path, "set", "d=x\\y", "e=1\n2")
    values = GrubEnv(path).read()
    assert values["d"] == "x\\y"
    assert values["e"] == "1\n2"
    assert values["b"] == "two\nlines"
    assert values["c"] == ""


names = st.sampled_from(["boot_counter", "boot_success", "saved_entry", "menu_auto_hide", "x"])
values = st.text(alphabet="ab01-\\\n= #", max_size=12)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), names, values),
        st.tuples(st.just("unset"), names, st.just("")),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_any_sequence_of_set_and_unset_gives_the_same_bytes_as_grub_editenv(tmp_path: Path, sequence) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for p in (ours, theirs):
        p.unlink(missing_ok=True)
    grub_editenv(theirs, "create")
    env = GrubEnv(ours)
    env.create()
    for op, name, value in sequence:
        if op == "set":
            grub_editenv(theirs, "set", f"{name}={value}")
            env.set(**{name: value})
        else:
            grub_editenv(theirs, "unset", name)
            env.unset(name)
        assert ours.read_bytes() == theirs.read_bytes()
    assert env.read() == {k: v for k, v in GrubEnv(theirs).read().items()}


def test_comments_and_foreign_variables_written_by_grub_editenv_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    grub_editenv(path, "create")
    grub_editenv(path, "set", "saved_entry=fedora-1", "kernelopts=root=/dev/sda1 ro")
    GrubEnv(path).set(boot_counter="3")
    GrubEnv(path).unset("boot_counter")
    theirs = tmp_path / "theirs"
    grub_editenv(theirs, "create")
    grub_editenv(theirs, "set", "saved_entry=fedora-1", "kernelopts=root=/dev/sda1 ro")
    assert path.read_bytes() == theirs.read_bytes()


def test_a_block_that_would_overflow_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    grub_editenv(path, "create")
    before = path.read_bytes()
    with pytest.raises(GrubEnvError, match="full"):
        GrubEnv(path).set(big="x" * 2000)
    assert path.read_bytes() == before


def test_a_file_without_the_grub_signature_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    path.write_bytes(b"boot_counter=3\n" + b"#" * 100)
    with pytest.raises(GrubEnvError, match="not a GRUB environment block"):
        GrubEnv(path).read()
    with pytest.raises(GrubEnvError):
        GrubEnv(path).set(boot_success="1")
    assert path.read_bytes().startswith(b"boot_counter=3")


def test_reading_a_missing_file_does_not_create_it(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    assert GrubEnv(path).read() == {}
    assert not path.exists()


def test_setting_in_a_missing_file_creates_what_grub_editenv_would(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    GrubEnv(ours).set(boot_success="1")
    grub_editenv(theirs, "set", "boot_success=1")
    assert ours.read_bytes() == theirs.read_bytes()


def test_an_update_that_changes_nothing_does_not_rewrite_the_file(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    GrubEnv(path).set(boot_success="1")
    inode = path.stat().st_ino
    GrubEnv(path).set(boot_success="1")
    GrubEnv(path).unset("boot_counter")
    assert path.stat().st_ino == inode


def test_file_mode_is_kept_across_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    grub_editenv(path, "create")
    path.chmod(0o600)
    GrubEnv(path).set(boot_counter="2")
    assert path.stat().st_mode & 0o777 == 0o600


def test_arming_writes_the_same_bytes_as_greenboots_set_counter(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for p in (ours, theirs):
        editenv(p, "create")
        editenv(p, "set", "boot_success=1")
    bootcount.arm(ours, 3)
    # usr/libexec/greenboot/greenboot-grub2-set-counter
    editenv(theirs, "set", "boot_counter=3")
    editenv(theirs, "set", "boot_success=0")
    assert ours.read_bytes() == theirs.read_bytes()
    assert bootcount.read(ours).counter == 3


def test_marking_green_writes_the_same_bytes_as_greenboots_set_success(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for p in (ours, theirs):
        editenv(p, "create")
        editenv(p, "set", "boot_counter=2", "boot_success=0")
    bootcount.mark_green(ours)
    # usr/libexec/greenboot/greenboot-grub2-set-success
    editenv(theirs, "set", "boot_success=1")
    editenv(theirs, "unset", "boot_counter")
    assert ours.read_bytes() == theirs.read_bytes()
    state = bootcount.read(ours)
    assert not state.armed and state.success == "1"


@pytest.mark.parametrize("attempts", [0, -1, 101, "3", True])
def test_arming_with_an_impossible_attempt_count_is_refused(tmp_path: Path, attempts) -> None:
    path = tmp_path / "grubenv"
    with pytest.raises(bootcount.BootCountError, match="boot attempts"):
        bootcount.arm(path, attempts)
    assert not path.exists()


def test_fallback_and_last_attempt_are_read_from_the_counter(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    editenv(path, "set", "boot_counter=-1", "boot_success=0")
    assert bootcount.read(path).fallback
    editenv(path, "set", "boot_counter=0")
    state = bootcount.read(path)
    assert state.last_attempt and state.attempts_left() == 0 and not state.fallback


def _hammer(path: str, name: str, rounds: int) -> None:
    env = GrubEnv(path)
    for i in range(rounds):
        env.set(**{name: str(i)})


def test_concurrent_writers_never_lose_each_others_variables(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / "grubenv"
    grub_editenv(path, "create")
    procs = [
        multiprocessing.get_context("fork").Process(target=_hammer, args=(str(path), name, 150))
        for name in ("boot_counter", "boot_success", "saved_entry")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert editenv_list(path) == {"boot_counter": "149", "boot_success": "149", "saved_entry": "149"}
