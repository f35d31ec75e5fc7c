"""Atomic writes leave the old content or the new one, never a mix or a stray temp file."""

from __future__ import annotations

import os

import pytest

from greenboot.atomic import replacing_dir, write_json, write_text


def test_write_replaces_content_and_sets_mode(tmp_path) -> None:
    target = tmp_path / "state" / "agent.json"
    write_text(target, "old")
    write_json(target, {"b": 1, "a": 2}, mode=0o600)
    assert target.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["agent.json"]


def test_failed_directory_build_leaves_the_old_directory(tmp_path) -> None:
    target = tmp_path / "release"
    with replacing_dir(target) as tmp:
        (tmp / "catalog.json").write_text("v1")
    with pytest.raises(RuntimeError), replacing_dir(target) as tmp:
        (tmp / "catalog.json").write_text("half")
        raise RuntimeError("disk full")
    assert (target / "catalog.json").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]
