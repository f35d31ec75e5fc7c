"""External programs are run as argv lists and fail with typed, readable errors."""

from __future__ import annotations

import pytest

from greenboot.external import ToolError, ToolMissing, ToolTimeout, run


def test_failing_tool_raises_tool_error_with_its_stderr() -> None:
    with pytest.raises(ToolError) as info:
        run(["sh", "-c", "echo first >&2; echo 'the real reason' >&2; exit 3"])
    assert info.value.returncode == 3
    assert "the real reason" in str(info.value)
    assert "exit 3" in str(info.value)


def test_missing_tool_names_the_tool() -> None:
    with pytest.raises(ToolMissing, match="no-such-tool-fieldshift"):
        run(["no-such-tool-fieldshift", "--version"])


def test_arguments_are_never_interpreted_by_a_shell(tmp_path) -> None:
    out = run(["printf", "%s", "$(touch pwned); *"], cwd=tmp_path).stdout
    assert out == "$(touch pwned); *"
    assert not (tmp_path / "pwned").exists()


def test_a_hung_tool_is_stopped() -> None:
    with pytest.raises(ToolTimeout):
        run(["sleep", "5"], timeout=0.2)
