"""The runner behaves like bash greenboot on real script trees, plus timeouts, keep-going and reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

from greenboot import config, report
from greenboot.healthcheck import Context
from greenboot.journal import Journal
from greenboot.layout import Layout
from greenboot.scripts import Runner, discover
from tests.greenboot.conftest import Cli, write_script

LOGGER = 'echo "$(basename "$0")" >> "$FIELDSHIFT_GREENBOOT_ROOT/order.log"\n'


def order(root: Path) -> list[str]:
    path = root / "order.log"
    return path.read_text().split() if path.exists() else []


def conf(root: Path, text: str) -> None:
    path = root / "etc" / "greenboot" / "greenboot.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def runner(root: Path) -> Runner:
    return Runner(Layout.at(root), config.load(root), Journal(quiet=True))


def test_check_runs_usr_required_usr_wanted_etc_required_etc_wanted(tmp_path: Path) -> None:
    for rel in (
        "etc/greenboot/check/wanted.d/a.sh",
        "etc/greenboot/check/required.d/a.sh",
        "usr/lib/greenboot/check/wanted.d/a.sh",
        "usr/lib/greenboot/check/required.d/a.sh",
    ):
        tag = f'{rel.split("/")[0]}-{rel.split("/")[-2]}'
        write_script(tmp_path, rel, f'echo {tag} >> "$FIELDSHIFT_GREENBOOT_ROOT/o"\n')
    result = Cli(tmp_path)("check")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o").read_text().split() == [
        "usr-required.d",
        "usr-wanted.d",
        "etc-required.d",
        "etc-wanted.d",
    ]


def test_scripts_run_in_c_locale_byte_order(tmp_path: Path) -> None:
    names = ["b.sh", "B.sh", "_u.sh", "10_x.sh", "9_x.sh", "a.sh", "Z.sh", "é.sh"]
    for name in names:
        write_script(tmp_path, f"etc/greenboot/check/required.d/{name}", LOGGER)
    Cli(tmp_path)("check", env={"LC_ALL": "en_US.UTF-8"})
    assert order(tmp_path) == sorted(names, key=lambda n: n.encode())
    assert order(tmp_path)[:3] == ["10_x.sh", "9_x.sh", "B.sh"]


def test_sh_files_run_with_bash_even_when_not_executable_and_other_executables_are_execd(tmp_path: Path) -> None:
    d = "etc/greenboot/check/required.d"
    write_script(tmp_path, f"{d}/10_plain.sh", "[[ -n $BASH_VERSION ]] && " + LOGGER, mode=0o644)
    write_script(tmp_path, f"{d}/20_python", "#!/usr/bin/env python3\nimport os\n"
                 "open(os.environ['FIELDSHIFT_GREENBOOT_ROOT'] + '/order.log', 'a').write('20_python\\n')\n")
    write_script(tmp_path, f"{d}/30_readme.txt", "not a script\n", mode=0o644)
    (tmp_path / d / "40_dir.sh").mkdir()
    result = Cli(tmp_path)("--json", "check")
    assert result.returncode == 0, result.stderr
    assert order(tmp_path) == ["10_plain.sh", "20_python"]
    assert [s["name"] for s in json.loads(result.stdout)["scripts"]] == ["10_plain.sh", "20_python"]


def test_required_failure_makes_the_boot_red_and_check_exit_1(tmp_path: Path) -> None:
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_fail.sh", "echo broken >&2\nexit 4\n")
    result = Cli(tmp_path)("check")
    assert result.returncode == 1
    assert "Script '10_fail.sh' FAILURE (exit code '4')" in result.stdout
    assert "Boot Status is RED" in result.stdout
    rep = report.latest(tmp_path)
    assert rep is not None and rep.verdict == "red"
    script = rep.phases["check"].results[0]
    assert (script.status, script.exit_code, script.output) == ("failed", 4, ("broken",))


def test_wanted_failure_is_only_reported(tmp_path: Path) -> None:
    write_script(tmp_path, "usr/lib/greenboot/check/wanted.d/10_fail.sh", "exit 1\n")
    result = Cli(tmp_path)("check")
    assert result.returncode == 0
    assert "FAILURE (exit code '1'). Continuing..." in result.stdout
    assert report.latest(tmp_path).verdict == "green"


def test_required_check_failure_skips_later_checks_by_default(tmp_path: Path) -> None:
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_fail.sh", "exit 1\n")
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/20_also.sh", LOGGER + "exit 1\n")
    write_script(tmp_path, "usr/lib/greenboot/check/wanted.d/30_wanted.sh", LOGGER)
    result = runner(tmp_path).run_phase("check")
    assert not result.green
    assert [r.status for r in result.results] == ["failed", "skipped", "skipped"]
    assert "10_fail.sh failed" in result.results[1].reason
    assert order(tmp_path) == []


def test_keep_going_reports_every_failing_required_check(tmp_path: Path) -> None:
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_fail.sh", "exit 1\n")
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/20_ok.sh", "exit 0\n")
    write_script(tmp_path, "etc/greenboot/check/required.d/30_fail.sh", "exit 2\n")
    result = Cli(tmp_path)("--json", "check", "--keep-going")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert [(s["name"], s["status"]) for s in data["scripts"]] == [
        ("10_fail.sh", "failed"),
        ("20_ok.sh", "passed"),
        ("30_fail.sh", "failed"),
    ]
    assert "10_fail.sh (exit code 1), 30_fail.sh (exit code 2)" in result.stderr
    conf(tmp_path, "FIELDSHIFT_KEEP_GOING=true\n")
    assert len(runner(tmp_path).run_phase("check").failed_required) == 2


def test_disabled_healthchecks_are_skipped_and_misspellings_warned(tmp_path: Path) -> None:
    conf(tmp_path, 'DISABLED_HEALTHCHECKS=("10_fail.sh" "99_tpyo.sh")\n')
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_fail.sh", "exit 1\n")
    result = Cli(tmp_path)("check")
    assert result.returncode == 0
    assert "'10_fail.sh' was skipped, as specified in config" in result.stdout
    assert "WARNING: 99_tpyo.sh was not found and may be misspelled" in result.stdout


def test_a_hung_script_is_killed_with_its_children_and_fails_the_boot(tmp_path: Path) -> None:
    conf(tmp_path, "FIELDSHIFT_SCRIPT_TIMEOUT_SEC=1\n")
    pidfile = tmp_path / "child.pid"
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_hang.sh",
                 f"echo started\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    start = time.monotonic()
    result = runner(tmp_path).run_phase("check")
    assert time.monotonic() - start < 10
    hung = result.results[0]
    assert (hung.status, hung.output) == ("timeout", ("started",))
    assert "limit 1 s per script" in hung.reason
    assert not result.green
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not alive(child)


def alive(pid: int) -> bool:
    """Running and not a zombie waiting for its (re)parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_hung_script_that_closed_its_output_is_still_stopped(tmp_path: Path) -> None:
    conf(tmp_path, "FIELDSHIFT_SCRIPT_TIMEOUT_SEC=1\n")
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_quiet_hang.sh", "exec >/dev/null 2>&1\nsleep 60\n")
    start = time.monotonic()
    result = runner(tmp_path).run_phase("check")
    assert time.monotonic() - start < 10
    assert result.results[0].status == "timeout" and not result.green


def test_the_whole_run_has_a_deadline_too(tmp_path: Path) -> None:
    conf(tmp_path, "FIELDSHIFT_SCRIPT_TIMEOUT_SEC=0\nFIELDSHIFT_RUN_TIMEOUT_SEC=1\n")
    write_script(tmp_path, "usr/lib/greenboot/check/wanted.d/10_slow.sh", "sleep 0.6\n")
    write_script(tmp_path, "usr/lib/greenboot/check/wanted.d/20_slower.sh", "sleep 30\n")
    write_script(tmp_path, "usr/lib/greenboot/check/wanted.d/30_never.sh", "exit 0\n")
    result = runner(tmp_path).run_phase("check")
    assert [r.status for r in result.results] == ["passed", "timeout", "skipped"]
    assert result.run_timed_out and not result.green


def test_greenboot_conf_values_reach_the_scripts(tmp_path: Path) -> None:
    conf(tmp_path, "MICROSHIFT_WAIT_TIMEOUT_SEC=600\n")
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_env.sh", '[ "$MICROSHIFT_WAIT_TIMEOUT_SEC" = 600 ]\n')
    assert Cli(tmp_path)("check").returncode == 0


def test_only_the_last_output_lines_are_kept(tmp_path: Path) -> None:
    conf(tmp_path, "FIELDSHIFT_OUTPUT_LINES=3\n")
    chatty = "for i in $(seq 1 50); do echo line$i; done\n"
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_chatty.sh", chatty)
    result = runner(tmp_path).run_phase("check")
    assert result.results[0].output == ("line48", "line49", "line50")


def test_a_background_child_holding_the_output_does_not_block_the_run(tmp_path: Path) -> None:
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_daemon.sh", "sleep 5 &\necho done\n")
    start = time.monotonic()
    result = runner(tmp_path).run_phase("check")
    assert result.green and time.monotonic() - start < 3


def test_green_and_red_run_their_directories_usr_before_etc(tmp_path: Path) -> None:
    for rel in ("etc/greenboot/red.d/1.sh", "usr/lib/greenboot/red.d/2.sh", "usr/lib/greenboot/green.d/3.sh"):
        write_script(tmp_path, rel, LOGGER + "exit 1\n")
    layout = Layout.at(tmp_path)
    assert [s.path.relative_to(tmp_path).as_posix() for s in discover(layout, "red")] == [
        "usr/lib/greenboot/red.d/2.sh",
        "etc/greenboot/red.d/1.sh",
    ]
    cli = Cli(tmp_path)
    assert cli("red").returncode == 0  # red.d failures are reported, never fatal
    assert cli("green").returncode == 0
    assert order(tmp_path) == ["2.sh", "1.sh", "3.sh"]


def test_reports_keep_only_the_last_n_boots(tmp_path: Path) -> None:
    conf(tmp_path, "FIELDSHIFT_REPORTS_KEEP=3\n")
    boot_id = tmp_path / "proc" / "sys" / "kernel" / "random" / "boot_id"
    boot_id.parent.mkdir(parents=True)
    ctx_cfg = config.load(tmp_path)
    from greenboot import healthcheck

    for n in range(5):
        boot_id.write_text(f"boot-{n}\n")
        healthcheck.check(Context(Layout.at(tmp_path), ctx_cfg, Journal(quiet=True)))
    kept = report.reports(tmp_path)
    assert [r.boot_id for r in kept] == ["boot-2", "boot-3", "boot-4"]
    assert len(list((tmp_path / "var/lib/fieldshift/greenboot/boots").iterdir())) == 3


def test_a_bad_config_value_of_ours_makes_check_fail_with_one_line(tmp_path: Path) -> None:
    conf(tmp_path, "FIELDSHIFT_RUN_TIMEOUT_SEC=forever\n")
    result = Cli(tmp_path)("check")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "FIELDSHIFT_RUN_TIMEOUT_SEC" in result.stderr
