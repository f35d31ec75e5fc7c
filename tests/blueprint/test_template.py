"""Jinja2 blueprint templates: variables from --var and --vars, strict about undefined names."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.blueprint import BlueprintError, load
from builder.blueprint.template import parse_var, read_vars_file


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_template_renders_with_given_variables(tmp_path: Path) -> None:
    path = write(tmp_path, "bp.toml.j2", 'name = "{{ name }}"\n[fieldshift]\nchannel = "{{ channel }}"\n')
    bp = load(path, {"name": "edge", "channel": "beta"})
    assert (bp.name, bp.fieldshift.channel) == ("edge", "beta")


def test_undefined_variable_names_the_variable_and_template_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bp.toml.j2", 'name = "x"\n\n[fieldshift]\nchannel = "{{ channel }}"\n')
    with pytest.raises(BlueprintError) as info:
        load(path, {})
    assert info.value.message.startswith(f"{path}:4: ")
    assert 'template variable "channel" is undefined' in info.value.message


def test_undefined_attribute_of_a_variable_is_an_error_too(tmp_path: Path) -> None:
    path = write(tmp_path, "bp.toml.j2", 'name = "{{ site.name }}"\n')
    with pytest.raises(BlueprintError, match=r"bp\.toml\.j2:1: "):
        load(path, {"site": {}})


def test_default_filter_supplies_optional_variables(tmp_path: Path) -> None:
    path = write(tmp_path, "bp.toml.j2", 'name = "{{ name | default("fallback") }}"\n')
    assert load(path, {}).name == "fallback"


def test_template_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bp.toml.j2", 'name = "x"\n{% if %}\n')
    with pytest.raises(BlueprintError, match=rf"^{path}:2: template syntax error"):
        load(path, {})


def test_toml_error_after_rendering_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bp.toml.j2", 'name = "x"\nversion = {{ v }}\n')
    with pytest.raises(BlueprintError, match=rf"^{path} \(rendered\):2:\d+: TOML syntax error"):
        load(path, {"v": "1.0.0"})


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bp.toml", 'name = "x"\n[customizations\nhostname = "a"\n')
    with pytest.raises(BlueprintError) as info:
        load(path)
    assert info.value.message.startswith(f"{path}:2:")
    assert "TOML syntax error" in info.value.message


def test_variables_for_a_plain_toml_file_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "bp.toml", 'name = "x"\n')
    with pytest.raises(BlueprintError, match="not a .j2 template"):
        load(path, {"channel": "stable"})


def test_vars_file_is_a_yaml_mapping(tmp_path: Path) -> None:
    vars_path = write(tmp_path, "vars.yaml", "channel: beta\nports: [1, 2]\n")
    assert read_vars_file(vars_path) == {"channel": "beta", "ports": [1, 2]}
    path = write(tmp_path, "bp.toml.j2", 'name = "x"\n[customizations.firewall]\n'
                 'ports = [{% for p in ports %}"{{ p }}:tcp",{% endfor %}]\n')  # fmt: skip
    assert load(path, read_vars_file(vars_path)).customizations.firewall.ports == ("1:tcp", "2:tcp")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("- a\n- b\n", "expected a mapping"), ("a: [1\n", "YAML syntax error"), ("1: x\n", "not a valid variable")],
)
def test_bad_vars_file_is_one_clear_error(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(BlueprintError, match=fragment):
        read_vars_file(write(tmp_path, "vars.yaml", text))


@pytest.mark.parametrize("item", ["novalue", "=x", "bad-name=x", "1x=y"])
def test_malformed_var_assignment_is_refused(item: str) -> None:
    with pytest.raises(BlueprintError, match="KEY=VALUE"):
        parse_var(item)


def test_var_value_may_contain_equals_signs() -> None:
    assert parse_var("url=http://x/?a=b") == ("url", "http://x/?a=b")


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BlueprintError, match="no such file"):
        load(tmp_path / "absent.toml")
    with pytest.raises(BlueprintError, match="no such file"):
        load(tmp_path / "absent.toml.j2", {"a": "b"})


@pytest.mark.parametrize("value", ['{"auths": {"r": {"auth": "x"}}}', "it's \"quoted\"\nand\tmulti-line\x7f", "ünï"])
def test_toml_filter_keeps_any_string_one_valid_toml_value(tmp_path: Path, value: str) -> None:
    body = 'name = "x"\n[[customizations.files]]\npath = "/etc/s"\ndata = {{ s | toml }}\n'
    path = write(tmp_path, "bp.toml.j2", body)
    assert load(path, {"s": value}).customizations.files[0].data == value
