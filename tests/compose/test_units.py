"""Pure pieces of the compose code: version ordering, GVariant text, MicroShift config checks."""

from __future__ import annotations

import pytest

from builder.diff import vercmp
from builder.ostree import gvariant
from builder.stages import StageError
from builder.stages.microshift import validate


@pytest.mark.parametrize(("a", "b", "want"), [
    ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("1.10", "1.9", 1), ("1.0~rc1", "1.0", -1),
    ("1.0a", "1.0", 1), ("1.0", "1.0.1", -1), ("2.0^git1", "2.0", 1), ("1a", "1.1", -1),
])
def test_vercmp_orders_like_rpm(a: str, b: str, want: int) -> None:
    assert vercmp(a, b) == want
    assert vercmp(b, a) == -want


def test_gvariant_text_quotes_strings_and_types_empty_arrays() -> None:
    assert gvariant([("a'b", "0")]) == "[('a\\'b', '0')]"
    assert gvariant([]) == "@as []"
    assert gvariant(True) == "true"


def test_microshift_config_with_known_keys_passes() -> None:
    validate({"dns": {"baseDomain": "x"}, "network": {"clusterNetwork": ["10.42.0.0/16"]}}, "cfg")


def test_microshift_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(StageError, match=r'cfg\.apiserver: unknown MicroShift setting; did you mean "apiServer"'):
        validate({"apiserver": {}}, "cfg")


def test_microshift_service_network_must_be_a_cidr() -> None:
    with pytest.raises(StageError, match=r"cfg\.network\.serviceNetwork\[0\]"):
        validate({"network": {"serviceNetwork": ["10.43.0.1/16"]}}, "cfg")


def test_kernel_arguments_are_recorded_for_bootc(tmp_path) -> None:
    from builder.stages import kernel

    assert kernel.apply(tmp_path, kernel.KernelOptions('console=ttyS0 "quiet"')) == ("console=ttyS0", "quiet")
    assert (tmp_path / kernel.KARGS_FILE).read_text() == 'kargs = ["console=ttyS0", "quiet"]\n'


def test_sweep_removes_only_old_leftovers_of_killed_builds(tmp_path) -> None:
    import os

    from builder.cache import sweep

    old, fresh, tree = tmp_path / "build-old", tmp_path / "build-new", tmp_path / "trees" / "abc"
    for d in (old, fresh, tree):
        (d / "x").mkdir(parents=True)
    os.utime(old, (0, 0))
    os.utime(tree, (0, 0))
    sweep(tmp_path)
    assert not old.exists() and fresh.exists() and tree.exists()
