"""The lab the VM tier, the demo story and the bench share: usable from any working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.blueprint.loader import load
from tests.vm.lab import BLUEPRINT, Lab


def test_a_lab_in_a_relative_directory_gives_the_blueprint_a_trusted_key_it_can_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # .ci/demo runs the story in "_demo/story", relative to the checkout; the blueprint resolves a
    # relative key path against its own directory, where it is not.
    monkeypatch.chdir(tmp_path)
    lab = Lab(Path("_demo/story"))
    try:
        variables = lab.variables("1.0.0", "green")
        assert Path(variables["trusted_key"]).is_absolute()
        blueprint = load(BLUEPRINT, dict(variables), "qcow2", reproducible=True)
        assert blueprint.fieldshift is not None
        assert (tmp_path / "_demo/story/keys/catalog.pub").is_file()
    finally:
        lab.close()


def test_a_saved_lab_loads_in_another_process_with_the_same_keys_commits_and_disk(tmp_path: Path) -> None:
    built = Lab(tmp_path / "lab")
    try:
        built.commits = {"1.0.0": "a" * 64}
        built.image = tmp_path / "lab" / "out-1.0.0" / "disk.qcow2"
        built.save()
        key = built.key.read_bytes()
    finally:
        built.close()
    loaded = Lab.load(tmp_path / "lab")
    assert loaded is not None
    try:
        assert loaded.commits == {"1.0.0": "a" * 64}
        assert loaded.image == tmp_path / "lab" / "out-1.0.0" / "disk.qcow2"
        assert loaded.key.read_bytes() == key, "loading made new keys"
    finally:
        loaded.close()
    assert Lab.load(tmp_path / "nothing") is None
