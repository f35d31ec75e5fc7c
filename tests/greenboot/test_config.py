"""greenboot.conf is read the way bash greenboot sources it; the blueprint table renders to it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from greenboot import config
from greenboot.config import ConfigError


def write_conf(root: Path, text: str) -> Path:
    path = root / "etc" / "greenboot" / "greenboot.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bash_value(conf: Path, expr: str) -> str:
    """What bash sees after sourcing the file (the reference behaviour)."""
    return subprocess.run(
        ["bash", "-c", f'source "$1"; {expr}', "bash", str(conf)], capture_output=True, text=True, check=True
    ).stdout


def test_missing_file_gives_greenboot_defaults(tmp_path: Path) -> None:
    cfg = config.load(tmp_path)
    assert cfg.max_boot_attempts == 3
    assert cfg.disabled_healthchecks == ()
    assert cfg.microshift_wait_timeout_sec == 300


def test_the_upstream_file_and_a_disabled_array_read_like_bash_sources_them(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path,
        """# Greenboot configuration file

## Generic
GREENBOOT_MAX_BOOT_ATTEMPTS=5
DISABLED_HEALTHCHECKS=( "01_repository_dns_check.sh" 'my check.sh'  # spaces are fine quoted
    02_watchdog.sh )
### This value can be "true, TRUE, True..." as it will be lowercased.
GREENBOOT_WATCHDOG_CHECK_ENABLED=TRUE
export MICROSHIFT_WAIT_TIMEOUT_SEC="600" # longer for slow disks
GREENBOOT_MONITOR_SERVICES="sshd NetworkManager"
""",
    )
    cfg = config.load(tmp_path)
    assert cfg.max_boot_attempts == 5
    bash_array = bash_value(conf, 'printf "%s\\n" "${DISABLED_HEALTHCHECKS[@]}"').splitlines()
    assert list(cfg.disabled_healthchecks) == bash_array
    assert bash_array == ["01_repository_dns_check.sh", "my check.sh", "02_watchdog.sh"]
    assert cfg.watchdog_check_enabled is True
    assert cfg.microshift_wait_timeout_sec == 600
    assert cfg.env["MICROSHIFT_WAIT_TIMEOUT_SEC"] == bash_value(conf, 'printf %s "$MICROSHIFT_WAIT_TIMEOUT_SEC"')
    assert cfg.env["GREENBOOT_MONITOR_SERVICES"] == "sshd NetworkManager"


def test_later_assignments_win_and_arrays_append_like_bash(tmp_path: Path) -> None:
    conf = write_conf(
        tmp_path,
        'GREENBOOT_MAX_BOOT_ATTEMPTS=2\nGREENBOOT_MAX_BOOT_ATTEMPTS=4\nDISABLED_HEALTHCHECKS=(a.sh)\n'
        "DISABLED_HEALTHCHECKS+=(b.sh)\n",
    )
    cfg = config.load(tmp_path)
    assert cfg.max_boot_attempts == 4
    assert list(cfg.disabled_healthchecks) == bash_value(conf, 'printf "%s\\n" "${DISABLED_HEALTHCHECKS[@]}"').split()


def test_a_command_in_the_file_is_refused_with_its_line(tmp_path: Path) -> None:
    write_conf(tmp_path, "GREENBOOT_MAX_BOOT_ATTEMPTS=3\nrm -rf /\n")
    with pytest.raises(ConfigError, match=r"greenboot.conf:2: only KEY=value"):
        config.load(tmp_path)


def test_variable_expansion_is_refused_but_single_quoted_dollars_are_literal(tmp_path: Path) -> None:
    write_conf(tmp_path, "X='$HOME'\n")
    assert config.load(tmp_path).env["X"] == "$HOME"
    write_conf(tmp_path, "X=$HOME\n")
    with pytest.raises(ConfigError, match="expansion"):
        config.load(tmp_path)


def test_an_unterminated_array_is_refused(tmp_path: Path) -> None:
    write_conf(tmp_path, 'DISABLED_HEALTHCHECKS=( "a.sh"\n')
    with pytest.raises(ConfigError, match="closing"):
        config.load(tmp_path)


def test_bad_greenboot_values_fall_back_like_greenboot_with_a_warning(tmp_path: Path) -> None:
    write_conf(tmp_path, "GREENBOOT_MAX_BOOT_ATTEMPTS=many\nMICROSHIFT_WAIT_TIMEOUT_SEC=30\n")
    cfg = config.load(tmp_path)
    assert cfg.max_boot_attempts == 3
    assert cfg.microshift_wait_timeout_sec == 60  # functions.sh clamps to 60
    assert len(cfg.warnings) == 2


def test_a_bad_value_for_one_of_our_keys_is_an_error_naming_it(tmp_path: Path) -> None:
    write_conf(tmp_path, "FIELDSHIFT_SCRIPT_TIMEOUT_SEC=soon\n")
    with pytest.raises(ConfigError, match="FIELDSHIFT_SCRIPT_TIMEOUT_SEC"):
        config.load(tmp_path)


def test_blueprint_table_renders_a_conf_that_reads_back_the_same(tmp_path: Path) -> None:
    table = {
        "max_boot_attempts": 4,
        "disabled_healthchecks": ["a b.sh", "c.sh"],
        "keep_going": True,
        "script_timeout_sec": 120,
        "microshift_workloads": ["openshift-dns/daemonset/dns-default"],
    }
    conf = write_conf(tmp_path, config.render(table))
    cfg = config.load(tmp_path)
    assert cfg.max_boot_attempts == 4
    assert cfg.disabled_healthchecks == ("a b.sh", "c.sh")
    assert cfg.keep_going is True and cfg.script_timeout_sec == 120
    assert bash_value(conf, 'printf "%s|" "${DISABLED_HEALTHCHECKS[@]}"') == "a b.sh|c.sh|"


def test_unknown_blueprint_key_names_the_path_and_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fieldshift\.greenboot\.max_boot_attempt .*max_boot_attempts"):
        config.validate_table({"max_boot_attempt": 3})
    with pytest.raises(ConfigError, match=r"fieldshift\.greenboot\.max_boot_attempts: 150 is above"):
        config.validate_table({"max_boot_attempts": 150})
