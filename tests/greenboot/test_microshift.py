"""The MicroShift check against a loopback HTTPS server that answers like MicroShift's API server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from greenboot import microshift
from greenboot.microshift import Settings, Workload
from tests.greenboot.conftest import Cli, write_script
from tests.greenboot.kubeapi import (
    ApiState,
    KubeApi,
    Pki,
    daemonset,
    deployment,
    healthy_microshift,
    make_pki,
    pod,
    write_kubeconfig,
)

KUBECONFIG = "var/lib/microshift/resources/kubeadmin/kubeconfig"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def probe(tmp_path: Path, states: list[str]) -> list[str]:
    """A real tiny script standing in for `systemctl is-active microshift.service`: prints the next state."""
    state_file = tmp_path / "service-states"
    state_file.write_text("\n".join(states) + "\n")
    script = write_script(
        tmp_path,
        "bin/is-active",
        "#!/bin/bash\n"
        f'f="{state_file}"\n'
        'state=$(head -n1 "$f"); [ "$(wc -l < "$f")" -gt 1 ] && sed -i 1d "$f"\n'
        'echo "$state"; [ "$state" = active ]\n',
    )
    return [str(script)]


def settings(tmp_path: Path, server: str, pki: Pki, **kw) -> Settings:
    kubeconfig = write_kubeconfig(tmp_path / KUBECONFIG, server, pki)
    base = dict(
        kubeconfig=kubeconfig,
        probe=kw.pop("probe", None) or probe(tmp_path, ["active"]),
        workloads=[Workload.parse(w) for w in microshift.CORE_WORKLOADS],
        wait_sec=3.0,
        interval=0.05,
        storage="false",
        request_timeout=2.0,
    )
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def run(s: Settings) -> microshift.Outcome:
    lines: list[str] = []
    return microshift.run_check(s, say=lines.append)


def test_ready_microshift_passes(tmp_path: Path, pki: Pki) -> None:
    state = healthy_microshift()
    with KubeApi(state, pki) as api:
        outcome = run(settings(tmp_path, api.url, pki))
    assert outcome.ok, outcome.log
    assert "/readyz" in state.requests
    assert "/apis/apps/v1/namespaces/openshift-dns/daemonsets/node-resolver" in state.requests
    assert "/apis/apps/v1/namespaces/openshift-ingress/deployments/router-default" in state.requests


def test_microshift_that_becomes_ready_while_waiting_passes(tmp_path: Path, pki: Pki) -> None:
    state = healthy_microshift()
    state.readyz = lambda n: n > 5
    router = state.objects[("openshift-ingress", "deployments", "router-default")]
    router["status"]["availableReplicas"] = 0
    original = state.readyz

    def readyz(n: int) -> bool:
        if n > 8:
            router["status"]["availableReplicas"] = 1
        return original(n)

    state.readyz = readyz
    with KubeApi(state, pki) as api:
        outcome = run(settings(tmp_path, api.url, pki, probe=probe(tmp_path, ["activating", "activating", "active"])))
    assert outcome.ok, outcome.log
    assert any("openshift-ingress/deployment/router-default: 0 of 1 replicas available" in line for line in outcome.log)


def test_never_ready_workload_fails_naming_it_and_listing_its_pods(tmp_path: Path, pki: Pki) -> None:
    state = healthy_microshift()
    state.add(daemonset("openshift-ovn-kubernetes", "ovnkube-node", desired=1, available=0))
    state.pods["openshift-ovn-kubernetes"] = [pod("openshift-ovn-kubernetes", "ovnkube-node-x7", False, restarts=4)]
    with KubeApi(state, pki) as api:
        outcome = run(settings(tmp_path, api.url, pki, wait_sec=0.5))
    assert not outcome.ok
    assert outcome.step == "openshift-ovn-kubernetes/daemonset/ovnkube-node"
    assert "0 of 1 pods available" in outcome.message
    assert any("ovnkube-node-x7: Pending, ready=False, restarts=4" in line for line in outcome.log)


def test_never_ready_api_server_fails_on_readyz(tmp_path: Path, pki: Pki) -> None:
    state = healthy_microshift()
    state.readyz = lambda n: False
    with KubeApi(state, pki) as api:
        outcome = run(settings(tmp_path, api.url, pki, wait_sec=0.5))
    assert not outcome.ok and outcome.step == "readyz"
    assert "HTTP 500" in outcome.message and "poststarthook/start-apiextensions-controllers failed" in outcome.message


def test_flapping_api_server_is_not_green(tmp_path: Path, pki: Pki) -> None:
    state = healthy_microshift()
    state.readyz = lambda n: n % 2 == 1  # ok, failed, ok, failed, ...
    with KubeApi(state, pki) as api:
        outcome = run(settings(tmp_path, api.url, pki, wait_sec=1.0))
    assert not outcome.ok
    assert state.readyz_calls >= 4
    assert any("Readiness lost after 1 good round" in line for line in outcome.log)


def test_unreachable_api_server_fails_saying_so(tmp_path: Path, pki: Pki) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = run(settings(tmp_path, f"https://127.0.0.1:{port}", pki, wait_sec=0.5))
    assert not outcome.ok and outcome.step == "api"
    assert "unreachable" in outcome.message and str(port) in outcome.message


def test_a_failed_service_ends_the_wait_at_once(tmp_path: Path, pki: Pki) -> None:
    outcome = run(settings(tmp_path, "https://127.0.0.1:1", pki, wait_sec=30, probe=probe(tmp_path, ["failed"])))
    assert not outcome.ok and outcome.step == "service"
    assert "failed" in outcome.message


def test_an_inactive_service_times_out(tmp_path: Path, pki: Pki) -> None:
    outcome = run(settings(tmp_path, "https://127.0.0.1:1", pki, wait_sec=0.3, probe=probe(tmp_path, ["inactive"])))
    assert not outcome.ok and outcome.step == "service" and "inactive" in outcome.message


def test_a_client_without_the_kubeadmin_certificate_is_refused_by_the_server(tmp_path: Path, pki: Pki) -> None:
    """Guards the fake itself: it really requires client certificates, so the check really sends them."""
    import requests

    with KubeApi(healthy_microshift(), pki) as api, pytest.raises(requests.exceptions.RequestException):
        requests.get(api.url + "/readyz", verify=str(pki.ca), timeout=2)


def test_storage_enabled_adds_lvms_and_the_snapshot_controller(tmp_path: Path, pki: Pki) -> None:
    state = healthy_microshift(storage=True)
    state.objects[("openshift-storage", "daemonsets", "vg-manager")]["status"]["numberAvailable"] = 0
    with KubeApi(state, pki) as api:
        outcome = run(settings(tmp_path, api.url, pki, storage="auto", wait_sec=0.5))
    assert not outcome.ok and outcome.step == "openshift-storage/daemonset/vg-manager"
    state.objects[("openshift-storage", "daemonsets", "vg-manager")]["status"]["numberAvailable"] = 1
    config_yaml = tmp_path / "config.yaml"
    config_yaml.write_text("storage:\n  driver: none\n")
    with KubeApi(healthy_microshift(storage=False), pki) as api:
        assert run(settings(tmp_path, api.url, pki, storage="auto", config_yaml=config_yaml)).ok


def test_configured_workload_list_replaces_the_defaults(tmp_path: Path, pki: Pki) -> None:
    state = ApiState()
    state.add(deployment("my-app", "frontend", replicas=2, available=2))
    with KubeApi(state, pki) as api:
        outcome = run(settings(tmp_path, api.url, pki, workloads=[Workload.parse("my-app/deployment/frontend")]))
    assert outcome.ok, outcome.log


@pytest.mark.parametrize(
    ("base", "max_attempts", "counter", "expected"),
    [(300, 3, "2", 300), (300, 3, "1", 600), (300, 3, "0", 900), (300, 3, None, 300), (60, 3, "-1", 240)],
)
def test_the_wait_grows_with_each_boot_attempt_like_microshifts(base, max_attempts, counter, expected) -> None:
    assert microshift.wait_timeout(base, max_attempts, counter) == expected


def test_rollout_rules_follow_kubectl_rollout_status() -> None:
    assert microshift.rollout_problem("deployment", deployment("a", "b")) is None
    assert "generation" in microshift.rollout_problem("deployment", deployment("a", "b", generation=2, observed=1))
    assert "updated" in microshift.rollout_problem("deployment", deployment("a", "b", replicas=2, updated=1))
    assert "no pods scheduled" in microshift.rollout_problem("daemonset", daemonset("a", "b", desired=0, available=0))


def test_installed_check_script_runs_the_module_as_a_required_check(tmp_path: Path, pki: Pki) -> None:
    """The 40_microshift_running_check.sh equivalent, run by the runner like any greenboot script."""
    from greenboot import install

    root = tmp_path / "root"
    install.install_into(root, microshift=True)
    script = root / install.MICROSHIFT_CHECK
    assert script.stat().st_mode & 0o111
    is_active = probe(tmp_path, ["active"])[0]
    conf = root / "etc" / "greenboot" / "greenboot.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'FIELDSHIFT_MICROSHIFT_SERVICE_PROBE="{is_active}"\nFIELDSHIFT_MICROSHIFT_STORAGE=false\n')
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    with KubeApi(healthy_microshift(), pki) as api:
        write_kubeconfig(root / KUBECONFIG, api.url, pki)
        result = Cli(root)("--json", "check", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    scripts = json.loads(result.stdout)["scripts"]
    assert [(s["name"], s["status"]) for s in scripts] == [("40_microshift_running_check.sh", "passed")]
    assert any("MicroShift is ready" in line for line in scripts[0]["output"])


def test_check_path_does_not_import_requests_or_cryptography(tmp_path: Path) -> None:
    code = (
        "import sys; from greenboot import cli\n"
        "try:\n    cli.main(['--root', sys.argv[1], 'check'])\n"
        "except SystemExit:\n    pass\n"
        "bad = [m for m in ('requests', 'cryptography', 'yaml', 'click') if m in sys.modules]\n"
        "print('IMPORTED=' + ','.join(bad))\n"
    )
    write_script(tmp_path, "usr/lib/greenboot/check/required.d/10_ok.sh", "exit 0\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "IMPORTED="
