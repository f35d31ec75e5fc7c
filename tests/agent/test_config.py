"""Agent configuration: drop-in merging, typed keys, errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from updater import config


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_later_dropins_win_key_by_key_and_windows_accumulate(tmp_path: Path) -> None:
    usr = tmp_path / "usr/lib/fieldshift/agent.d"
    etc = tmp_path / "etc/fieldshift/agent.d"
    _write(usr / "50-blueprint.toml", 'channel = "stable"\nreboot_strategy = "immediate"\npoll_interval_seconds = 600\n'
           '[[reboot_window]]\ndays = ["Sat"]\nstart_time = "01:00"\nlength_minutes = 30\n')
    _write(etc / "10-site.toml", 'reboot_strategy = "window"\n'
           '[[reboot_window]]\ndays = ["Wednesday"]\nstart_time = "23:30"\nlength_minutes = 60\n')
    _write(etc / "90-local.toml", 'channel = "beta"\n[paths]\nstate_dir = "state"\n')
    cfg = config.load(config.dropin_files((usr, etc)))
    assert cfg.channel == "beta"
    assert cfg.poll_interval_seconds == 600
    assert cfg.reboot_strategy == "window"
    assert [w.days for w in cfg.reboot_windows] == [(5,), (2,)]
    assert cfg.reboot_windows[1].start_minute == 23 * 60 + 30
    assert cfg.paths.state_dir == etc / "state"   # relative to the file that set it
    assert cfg.paths.sysroot == Path("/")         # documented default


@pytest.mark.parametrize("text, key", [
    ('reboot_strategy = "sometimes"', "reboot_strategy"),
    ('rebot_strategy = "manual"', "rebot_strategy"),
    ("poll_interval_seconds = -5", "poll_interval_seconds"),
    ("rollout_wariness = 2", "rollout_wariness"),
    ('release_url = "ftp://x"', "release_url[0]"),
    ('[paths]\nsysrot = "/"', "paths.sysrot"),
    ('[[reboot_window]]\ndays = ["Funday"]\nstart_time = "01:00"\nlength_minutes = 5', "reboot_window[0].days[0]"),
    ('[[reboot_window]]\ndays = ["Mon"]\nstart_time = "25:00"\nlength_minutes = 5', "reboot_window[0].start_time"),
    ('time_zone = "Mars/Olympus"', "time_zone"),
    ('fleet_lock_group = "no spaces"', "fleet_lock_group"),
])
def test_invalid_key_is_one_clear_error_naming_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = _write(tmp_path / "bad.toml", text + "\n")
    with pytest.raises(config.ConfigError) as err:
        config.load([path])
    assert key in err.value.message
    assert "\n" not in err.value.message


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    path = _write(tmp_path / "typo.toml", 'rebot_strategy = "manual"\n')
    with pytest.raises(config.ConfigError, match="did you mean 'reboot_strategy'"):
        config.load([path])


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.toml", "channel = \n")
    with pytest.raises(config.ConfigError, match="broken.toml: not valid TOML"):
        config.load([path])


def test_window_strategy_without_windows_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.toml", 'reboot_strategy = "window"\n')
    with pytest.raises(config.ConfigError, match="reboot_window"):
        config.load([path])


def test_blueprint_table_is_validated_with_its_key_path() -> None:
    assert config.validate_table({"reboot_strategy": "manual"}, "fieldshift.agent") == {"reboot_strategy": "manual"}
    with pytest.raises(config.ConfigError, match=r"^fieldshift\.agent\.reboot_strategy: must be one of"):
        config.validate_table({"reboot_strategy": "never"}, "fieldshift.agent")


def test_every_key_is_documented_in_docs_agent_md() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "agent.md").read_text()
    missing = [k for k in config.KEYS if f"`{k}`" not in doc]
    assert missing == []
