"""``fieldshift blueprint validate|show`` as a user runs them: exit codes, one-line errors, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder.blueprint import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "blueprints" / "microshift-edge.toml.j2"


def fieldshift(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fieldshift: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_validate_accepts_the_bundled_example() -> None:
    result = fieldshift("blueprint", "validate", EXAMPLE, "--var", "channel=stable")
    assert result.returncode == 0, result.stderr
    assert "valid edge-commit blueprint microshift-edge 1.0.0" in result.stdout


def test_validate_json_reports_name_digest_and_type() -> None:
    result = fieldshift("blueprint", "validate", EXAMPLE, "--var", "channel=stable", "--image-type", "raw", "--json")
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["image_type"] == "raw" and len(data["source_digest"]) == 64


def test_undefined_variable_is_one_line_naming_it(tmp_path: Path) -> None:
    result = fieldshift("blueprint", "validate", EXAMPLE)
    assert_one_line_error(result, 'variable "channel" is undefined', "microshift-edge.toml.j2:")


def test_unknown_key_is_one_line_with_path_and_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "bp.toml"
    path.write_text('name = "x"\n[[customizations.user]]\nname = "a"\npasword = "p"\n')
    assert_one_line_error(fieldshift("blueprint", "validate", path), "customizations.user[0].pasword",
                          'did you mean "password"')  # fmt: skip


def test_customization_not_taken_by_the_image_type_fails(tmp_path: Path) -> None:
    path = tmp_path / "bp.toml"
    path.write_text('name = "x"\n[customizations.services]\nenabled = ["sshd"]\n')
    result = fieldshift("blueprint", "validate", path, "--image-type", "edge-installer")
    assert_one_line_error(result, "customizations.services", "edge-installer")


def test_toml_syntax_error_is_one_line_with_position(tmp_path: Path) -> None:
    path = tmp_path / "bp.toml"
    path.write_text('name = "x"\nversion = \n')
    assert_one_line_error(fieldshift("blueprint", "show", path), f"{path}:2:", "TOML syntax error")


def test_vars_file_and_var_override(tmp_path: Path) -> None:
    vars_file = tmp_path / "vars.yaml"
    vars_file.write_text("channel: beta\nbase_domain: lab.example.org\n")
    result = fieldshift("blueprint", "show", EXAMPLE, "--vars", vars_file, "--var", "channel=edge", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["blueprint"]
    assert data["fieldshift"]["channel"] == "edge"
    assert "baseDomain: lab.example.org" in data["customizations"]["files"][0]["data"]


def test_show_prints_toml_that_loads_back_to_the_same_blueprint(tmp_path: Path) -> None:
    result = fieldshift("blueprint", "show", EXAMPLE, "--var", "channel=stable")
    assert result.returncode == 0, result.stderr
    normalized = tmp_path / "normalized.toml"
    normalized.write_text(result.stdout)
    original = load(EXAMPLE, {"channel": "stable"})
    again = load(normalized)
    assert again.packages == original.packages
    assert again.customizations.firewall == original.customizations.firewall
    assert again.customizations.files == original.customizations.files
    assert again.customizations.services == original.customizations.services
    assert again.fieldshift == original.fieldshift


def test_debug_shows_the_traceback_for_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "bp.toml"
    path.write_text("name = 1\n")
    result = fieldshift("--debug", "blueprint", "validate", path)
    assert result.returncode != 0 and "Traceback" in result.stderr and "name: expected a string" in result.stderr


@pytest.mark.parametrize("args", [("--var", "nonsense"), ("--image-type", "iso")])
def test_bad_options_are_one_line_errors(args: tuple[str, str]) -> None:
    assert_one_line_error(fieldshift("blueprint", "validate", EXAMPLE, "--var", "channel=s", *args))


def test_blueprint_that_is_not_utf8_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "bp.toml"
    path.write_bytes(b'name = "\xff"\n')
    assert_one_line_error(fieldshift("blueprint", "validate", path), "not UTF-8")


def test_validate_json_reports_an_invalid_blueprint_on_stdout_too(tmp_path: Path) -> None:
    path = tmp_path / "bp.toml"
    path.write_text('name = "x"\nversion = "one"\n')
    result = fieldshift("blueprint", "validate", path, "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and "version" in data["error"]
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
