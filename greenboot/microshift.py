"""The built-in MicroShift health check: service active, API server ready, core workloads rolled out.

Does what MicroShift's ``packaging/greenboot/microshift-running-check.sh`` does, without ``oc``:

1. ``microshift.service`` is active: the probe command (``systemctl is-active microshift.service`` by
   default, ``FIELDSHIFT_MICROSHIFT_SERVICE_PROBE``) exits 0; a probe that prints ``failed`` ends the
   wait at once, like the upstream script;
2. the API server answers ``GET /readyz`` with ``ok``, authenticating with the client certificate of
   ``/var/lib/microshift/resources/kubeadmin/kubeconfig``;
3. the core workloads are rolled out (the rules of ``kubectl rollout status``): service-ca,
   router-default, dns-default, node-resolver, ovnkube-master, ovnkube-node, csi-snapshot-controller
   and LVMS when storage is enabled; ``FIELDSHIFT_MICROSHIFT_WORKLOADS`` replaces the list;
4. all of that holds for :data:`STABLE_ROUNDS` consecutive rounds, so a flapping API is not green.

The wait scales with the attempt like MicroShift's ``get_wait_timeout`` (functions.sh):
``MICROSHIFT_WAIT_TIMEOUT_SEC`` x (max attempts - ``boot_counter``). On a timeout, the pods of the
namespaces that are not ready are listed to say why.

``requests`` and ``yaml`` are imported only here, so other checks never pay for them.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from greenboot.errors import UserError

STABLE_ROUNDS = 3
CORE_WORKLOADS: Tuple[str, ...] = (
    "openshift-service-ca/deployment/service-ca",
    "openshift-ingress/deployment/router-default",
    "openshift-dns/daemonset/dns-default",
    "openshift-dns/daemonset/node-resolver",
    "openshift-ovn-kubernetes/daemonset/ovnkube-master",
    "openshift-ovn-kubernetes/daemonset/ovnkube-node",
)
STORAGE_WORKLOADS: Tuple[str, ...] = (
    "openshift-storage/deployment/lvms-operator",
    "openshift-storage/daemonset/vg-manager",
    "kube-system/deployment/csi-snapshot-controller",
)
_KINDS = {"deployment": "deployments", "daemonset": "daemonsets", "statefulset": "statefulsets"}


class MicroshiftError(UserError):
    """The MicroShift check cannot run as configured (e.g. an unreadable kubeconfig)."""


def wait_timeout(base: int, max_attempts: int, boot_counter: Optional[str]) -> int:
    """Seconds to wait, as MicroShift's get_wait_timeout: base x attempts used (at least base)."""
    try:
        counter = int(boot_counter) if boot_counter not in (None, "") else max_attempts - 1
    except ValueError:
        counter = max_attempts - 1
    wait = base * (max_attempts - counter)
    return wait if wait > 0 else base


@dataclass(frozen=True)
class Workload:
    """``namespace/kind/name`` of a workload that must be rolled out."""

    namespace: str
    kind: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Workload:
        parts = text.strip().split("/")
        if len(parts) != 3 or parts[1].lower() not in _KINDS or not all(parts):
            raise MicroshiftError(
                f"workload {text!r} must be namespace/kind/name with kind deployment, daemonset or statefulset"
            )
        return cls(parts[0], parts[1].lower(), parts[2])

    @property
    def path(self) -> str:
        return f"/apis/apps/v1/namespaces/{self.namespace}/{_KINDS[self.kind]}/{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


def rollout_problem(kind: str, obj: Dict[str, Any]) -> Optional[str]:
    """Why ``obj`` (a Deployment/DaemonSet/StatefulSet) is not rolled out yet, or None when it is."""
    meta, spec, st = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {}) or {}
    if st.get("observedGeneration", 0) < meta.get("generation", 0):
        return "waiting for the controller to observe the latest generation"
    if kind == "daemonset":
        desired = st.get("desiredNumberScheduled", 0)
        if desired < 1:
            return "no pods scheduled yet"
        if st.get("updatedNumberScheduled", 0) < desired:
            return f"{st.get('updatedNumberScheduled', 0)} of {desired} pods updated"
        if st.get("numberAvailable", 0) < desired:
            return f"{st.get('numberAvailable', 0)} of {desired} pods available"
        return None
    replicas = spec.get("replicas", 1)
    if st.get("updatedReplicas", 0) < replicas:
        return f"{st.get('updatedReplicas', 0)} of {replicas} replicas updated"
    if kind == "statefulset":
        ready = st.get("readyReplicas", 0)
        return None if ready >= replicas else f"{ready} of {replicas} replicas ready"
    if st.get("replicas", 0) > st.get("updatedReplicas", 0):
        return "old replicas are pending termination"
    if st.get("availableReplicas", 0) < replicas:
        return f"{st.get('availableReplicas', 0)} of {replicas} replicas available"
    return None


@dataclass(frozen=True)
class Kubeconfig:
    """The parts of a kubeconfig the check needs (PEM bytes, not paths)."""

    server: str
    ca: Optional[bytes]
    cert: Optional[bytes]
    key: Optional[bytes]
    insecure: bool = False


def _pem(entry: Dict[str, Any], data_key: str, path_key: str, base: Path) -> Optional[bytes]:
    if entry.get(data_key):
        return base64.b64decode(entry[data_key])
    if entry.get(path_key):
        path = Path(entry[path_key])
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


def load_kubeconfig(path: Path) -> Kubeconfig:
    """Read the current context's server, CA and client certificate from a kubeconfig file."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MicroshiftError(f"kubeconfig {path} does not exist (has MicroShift started once?)") from None
    except (OSError, yaml.YAMLError) as err:
        raise MicroshiftError(f"cannot read kubeconfig {path}: {err}") from err
    try:
        contexts = {c["name"]: c["context"] for c in doc.get("contexts", [])}
        clusters = {c["name"]: c["cluster"] for c in doc["clusters"]}
        users = {u["name"]: u["user"] for u in doc.get("users", [])}
        ctx = contexts.get(doc.get("current-context", "")) or (next(iter(contexts.values())) if contexts else {})
        cluster = clusters[ctx["cluster"]] if ctx else next(iter(clusters.values()))
        user = users.get(ctx.get("user", ""), {}) if ctx else (next(iter(users.values())) if users else {})
        base = path.parent
        return Kubeconfig(
            server=str(cluster["server"]).rstrip("/"),
            ca=_pem(cluster, "certificate-authority-data", "certificate-authority", base),
            cert=_pem(user, "client-certificate-data", "client-certificate", base),
            key=_pem(user, "client-key-data", "client-key", base),
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        )
    except (KeyError, TypeError, StopIteration, AttributeError, OSError, ValueError) as err:
        raise MicroshiftError(f"kubeconfig {path} lacks a usable cluster/user entry ({err})") from err


@dataclass
class Settings:
    """Everything one check run needs."""

    kubeconfig: Path
    probe: Sequence[str]
    workloads: Sequence[Workload]
    wait_sec: float
    interval: float = 1.0
    stable_rounds: int = STABLE_ROUNDS
    storage: str = "auto"  # "auto", "true", "false"
    config_yaml: Optional[Path] = None
    request_timeout: float = 5.0
    custom_workloads: bool = False  # a configured list replaces the defaults, storage ones included


@dataclass
class Outcome:
    """The verdict and the lines that explain it."""

    ok: bool
    step: str
    message: str
    log: List[str] = field(default_factory=list)


class Api:
    """A tiny Kubernetes API client over requests with the kubeconfig's client certificate."""

    def __init__(self, kube: Kubeconfig, timeout: float) -> None:
        import requests

        self._requests = requests
        self.kube = kube
        self.timeout = timeout
        self._dir = tempfile.mkdtemp(prefix="fieldshift-microshift-")
        os.chmod(self._dir, 0o700)
        self.session = requests.Session()
        self.session.trust_env = False
        if kube.cert and kube.key:
            cert, key = Path(self._dir, "client.crt"), Path(self._dir, "client.key")
            cert.write_bytes(kube.cert)
            key.touch(mode=0o600)
            key.write_bytes(kube.key)
            self.session.cert = (str(cert), str(key))
        if kube.insecure:
            self.session.verify = False
        elif kube.ca:
            ca = Path(self._dir, "ca.crt")
            ca.write_bytes(kube.ca)
            self.session.verify = str(ca)

    def close(self) -> None:
        self.session.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def get(self, path: str) -> Tuple[int, Any]:
        """(status, parsed JSON or text); raises OSError-like ``requests`` errors on transport failure."""
        resp = self.session.get(self.kube.server + path, timeout=self.timeout)
        ctype = resp.headers.get("Content-Type", "")
        body: Any = resp.json() if "json" in ctype else resp.text
        return resp.status_code, body

    def unreachable_error(self) -> tuple:
        return (self._requests.RequestException, ValueError)


def storage_enabled(settings: Settings, api: Api) -> bool:
    """LVMS counts when storage is on: ``true``; ``auto`` = driver not ``none`` and the namespace exists."""
    if settings.storage in ("true", "false"):
        return settings.storage == "true"
    if settings.config_yaml is not None and settings.config_yaml.is_file():
        import yaml

        try:
            doc = yaml.safe_load(settings.config_yaml.read_text()) or {}
            if str((doc.get("storage") or {}).get("driver", "")).lower() == "none":
                return False
        except (yaml.YAMLError, AttributeError, OSError):
            pass
    try:
        status, _ = api.get("/api/v1/namespaces/openshift-storage")
    except api.unreachable_error():
        return False
    return status == 200


def _probe(argv: Sequence[str]) -> Tuple[bool, str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return False, f"probe {' '.join(argv)} could not run: {err}"
    state = (proc.stdout.strip().splitlines() or [""])[-1]
    return proc.returncode == 0, state or f"exit {proc.returncode}"


def _pods_summary(api: Api, namespace: str) -> List[str]:
    try:
        status, body = api.get(f"/api/v1/namespaces/{namespace}/pods")
    except api.unreachable_error():
        return []
    if status != 200 or not isinstance(body, dict):
        return []
    lines = []
    for pod in body.get("items", []):
        st = pod.get("status", {})
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions", []))
        restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses", []) or [])
        name = pod.get("metadata", {}).get("name", "?")
        lines.append(f"  pod {namespace}/{name}: {st.get('phase', '?')}, ready={ready}, restarts={restarts}")
    return lines


def run_check(
    settings: Settings,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Wait up to ``settings.wait_sec`` for MicroShift to be up and stable; say progress as it goes."""
    deadline = clock() + settings.wait_sec
    log: List[str] = []

    def note(text: str) -> None:
        log.append(text)
        say(text)

    note(f"Waiting {settings.wait_sec:g}s for microshift.service to be active")
    while True:
        ok, state = _probe(settings.probe)
        if ok:
            break
        if state.strip() == "failed":
            return Outcome(False, "service", "microshift.service is failed; nothing to wait for", log)
        if clock() >= deadline:
            return Outcome(False, "service", f"microshift.service is not active ({state})", log)
        sleep(settings.interval)

    kube = load_kubeconfig(settings.kubeconfig)
    api = Api(kube, settings.request_timeout)
    try:
        return _wait_api(settings, api, note, clock, sleep, deadline, log)
    finally:
        api.close()


def _wait_api(
    settings: Settings,
    api: Api,
    note: Callable[[str], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    deadline: float,
    log: List[str],
) -> Outcome:
    note(f"Waiting for the API server at {api.kube.server} to be ready and the core workloads rolled out")
    workloads = list(settings.workloads)
    storage_decided = False
    streak = 0
    problem: Optional[Tuple[str, str]] = None
    last_reported = ""
    while True:
        problem = _round(settings, api, workloads)
        if problem is None and not storage_decided:
            storage_decided = True
            if not settings.custom_workloads and storage_enabled(settings, api):
                workloads += [Workload.parse(w) for w in STORAGE_WORKLOADS]
                note("Storage is enabled: LVMS and csi-snapshot-controller must be rolled out too")
                problem = _round(settings, api, workloads)
        if problem is None:
            streak += 1
            if streak >= settings.stable_rounds:
                note(f"MicroShift is ready: API and {len(workloads)} workloads stable for {streak} rounds")
                return Outcome(True, "ready", "MicroShift is running and healthy", log)
        else:
            if streak:
                note(f"Readiness lost after {streak} good round(s): {problem[0]}: {problem[1]}")
            streak = 0
            text = f"{problem[0]}: {problem[1]}"
            if text != last_reported:
                note(f"Not ready yet: {text}")
                last_reported = text
        if clock() >= deadline:
            break
        sleep(settings.interval)
    step, why = problem if problem is not None else ("stability", "readiness did not hold")
    if problem is None:
        why = f"ready for only {streak} of {settings.stable_rounds} consecutive rounds"
    if step.count("/") == 2:  # a workload: show the pods of its namespace
        for line in _pods_summary(api, step.split("/")[0]):
            note(line)
    return Outcome(False, step, f"MicroShift did not become healthy within {settings.wait_sec:g}s: {why}", log)


def _round(settings: Settings, api: Api, workloads: Sequence[Workload]) -> Optional[Tuple[str, str]]:
    """One pass over /readyz and the workloads: None when all is well, else (step, reason)."""
    try:
        status, body = api.get("/readyz")
    except api.unreachable_error() as err:
        return ("api", f"{api.kube.server} unreachable: {_short(err)}")
    text = body if isinstance(body, str) else str(body)
    if status != 200 or text.strip() != "ok":
        reason = [ln for ln in text.splitlines() if ln.startswith("[-]")]
        return ("readyz", f"HTTP {status}" + (f" ({'; '.join(reason[:3])})" if reason else ""))
    for workload in workloads:
        try:
            status, obj = api.get(workload.path)
        except api.unreachable_error() as err:
            return ("api", f"{api.kube.server} unreachable: {_short(err)}")
        if status == 404:
            return (str(workload), "not found yet")
        if status != 200 or not isinstance(obj, dict):
            return (str(workload), f"HTTP {status}")
        why = rollout_problem(workload.kind, obj)
        if why:
            return (str(workload), why)
    return None


def _short(err: BaseException) -> str:
    text = str(err)
    m = re.search(r"\[Errno -?\d+\] [^')\]]+|Connection refused|timed out|certificate verify failed[^')]*", text)
    return m.group(0) if m else text[:160]


def settings_from_config(root: Path, config: Any, boot_counter: Optional[str], wait_sec: Optional[float]) -> Settings:
    """Build :class:`Settings` from a GreenbootConfig (``--root`` resolves the kubeconfig under root)."""
    custom = bool(config.microshift_workloads)
    names = config.microshift_workloads or CORE_WORKLOADS
    kubeconfig = Path(config.microshift_kubeconfig)
    if not kubeconfig.is_absolute() or str(root) != "/":
        kubeconfig = root / str(kubeconfig).lstrip("/")
    settings = Settings(
        kubeconfig=kubeconfig,
        probe=tuple(config.microshift_service_probe),
        workloads=[Workload.parse(w) for w in names],
        wait_sec=wait_sec
        if wait_sec is not None
        else wait_timeout(config.microshift_wait_timeout_sec, config.max_boot_attempts, boot_counter),
        storage=config.microshift_storage,
        config_yaml=root / "etc" / "microshift" / "config.yaml",
        custom_workloads=custom,
    )
    return settings
