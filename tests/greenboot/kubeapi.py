"""A loopback HTTPS server that answers like the Kubernetes API of MicroShift, for the MicroShift check.

The protocol boundary stand-in for a running MicroShift: real TLS with a CA, a server certificate for
127.0.0.1 and client-certificate authentication (the kubeadmin kubeconfig is generated with
``cryptography``), and real response shapes for ``/readyz``, namespaces, pods, deployments and daemonsets.
What it answers is scripted per test through :class:`ApiState`.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1, a kubeadmin client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _cert(subject: str, key, issuer_key, issuer_name, *, ca: bool = False, san_ip: Optional[str] = None,
          org: Optional[str] = None) -> x509.Certificate:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, subject)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(san_ip))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("kube-apiserver-localhost-signer", ca_key, ca_key, None, ca=True)
    files: Dict[str, Path] = {}

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        files[name] = path
        return path

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    for name, org, ip in (("server", None, "127.0.0.1"), ("client", "system:masters", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cn = "127.0.0.1" if name == "server" else "system:admin"
        cert = _cert(cn, key, ca_key, ca.subject, san_ip=ip, org=org)
        write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{name}.key", key_pem(key))
    return Pki(files["ca.crt"], files["server.crt"], files["server.key"], files["client.crt"], files["client.key"])


def write_kubeconfig(path: Path, server: str, pki: Pki) -> Path:
    """A kubeconfig shaped like MicroShift's kubeadmin one (embedded base64 data)."""

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "microshift", "cluster": {"server": server, "certificate-authority-data": b64(pki.ca)}}],
        "contexts": [
            {"name": "microshift", "context": {"cluster": "microshift", "namespace": "default", "user": "user"}}
        ],
        "current-context": "microshift",
        "preferences": {},
        "users": [{"name": "user", "user": {
            "client-certificate-data": b64(pki.client_cert), "client-key-data": b64(pki.client_key)}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def deployment(ns: str, name: str, *, replicas: int = 1, available: int = 1, updated: Optional[int] = None,
               generation: int = 1, observed: int = 1) -> Dict[str, Any]:
    updated = replicas if updated is None else updated
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": ns, "generation": generation, "uid": f"uid-{name}"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": [{"type": "Available", "status": "True" if available >= replicas else "False"}],
        },
    }


def daemonset(ns: str, name: str, *, desired: int = 1, available: int = 1, updated: Optional[int] = None,
              generation: int = 1, observed: int = 1) -> Dict[str, Any]:
    updated = desired if updated is None else updated
    return {
        "kind": "DaemonSet",
        "apiVersion": "apps/v1",
        "metadata": {"name": name, "namespace": ns, "generation": generation, "uid": f"uid-{name}"},
        "spec": {"selector": {"matchLabels": {"app": name}}},
        "status": {
            "currentNumberScheduled": desired,
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": available,
            "numberAvailable": available,
            "updatedNumberScheduled": updated,
            "observedGeneration": observed,
        },
    }


def pod(ns: str, name: str, ready: bool, restarts: int = 0) -> Dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"containers": [{"name": "c", "image": "quay.io/openshift/example:latest"}]},
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "c", "ready": ready, "restartCount": restarts, "started": ready}],
        },
    }


def not_found(kind: str, name: str) -> Dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'{kind} "{name}" not found',
        "reason": "NotFound",
        "details": {"name": name, "kind": kind},
        "code": 404,
    }


READYZ_FAILED = (
    "[+]ping ok\n[+]log ok\n[+]etcd ok\n[-]poststarthook/start-apiextensions-controllers failed: reason withheld\n"
    "readyz check failed\n"
)


@dataclass
class ApiState:
    """What the API answers. ``readyz`` is called per request and returns True for ready."""

    readyz: Callable[[int], bool] = lambda n: True
    objects: Dict[Tuple[str, str, str], Dict[str, Any]] = field(default_factory=dict)  # (ns, plural, name)
    pods: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    namespaces: set = field(default_factory=set)
    requests: List[str] = field(default_factory=list)
    readyz_calls: int = 0

    def add(self, obj: Dict[str, Any]) -> None:
        plural = {"Deployment": "deployments", "DaemonSet": "daemonsets"}[obj["kind"]]
        meta = obj["metadata"]
        self.objects[(meta["namespace"], plural, meta["name"])] = obj
        self.namespaces.add(meta["namespace"])


def healthy_microshift(storage: bool = False) -> ApiState:
    """Every core workload of MicroShift rolled out (and LVMS when ``storage``)."""
    state = ApiState()
    for obj in (
        deployment("openshift-service-ca", "service-ca"),
        deployment("openshift-ingress", "router-default"),
        daemonset("openshift-dns", "dns-default"),
        daemonset("openshift-dns", "node-resolver"),
        daemonset("openshift-ovn-kubernetes", "ovnkube-master"),
        daemonset("openshift-ovn-kubernetes", "ovnkube-node"),
    ):
        state.add(obj)
    if storage:
        state.add(deployment("openshift-storage", "lvms-operator"))
        state.add(daemonset("openshift-storage", "vg-manager"))
        state.add(deployment("kube-system", "csi-snapshot-controller"))
    for ns in sorted(state.namespaces):
        state.pods[ns] = [pod(ns, f"{ns}-pod-1", True)]
    return state


class _Handler(BaseHTTPRequestHandler):
    state: ApiState

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        data = (json.dumps(body) if ctype == "application/json" else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        state = self.server.state  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        state.requests.append(path)
        parts = [p for p in path.split("/") if p]
        if path in ("/readyz", "/livez"):
            state.readyz_calls += 1
            if state.readyz(state.readyz_calls):
                self._send(200, "ok", "text/plain; charset=utf-8")
            else:
                self._send(500, READYZ_FAILED, "text/plain; charset=utf-8")
            return
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4:
            ns = parts[3]
            if ns in state.namespaces:
                self._send(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns},
                                 "status": {"phase": "Active"}})
            else:
                self._send(404, not_found("namespaces", ns))
            return
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "pods":
            items = state.pods.get(parts[3], [])
            self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                             "items": items})
            return
        if parts[:4] == ["apis", "apps", "v1", "namespaces"] and len(parts) == 7:
            key = (parts[4], parts[5], parts[6])
            obj = state.objects.get(key)
            if obj is None:
                self._send(404, not_found(f"{parts[5]}.apps", parts[6]))
            else:
                self._send(200, obj)
            return
        self._send(404, not_found("path", path))


class KubeApi:
    """Serve ``state`` over HTTPS on 127.0.0.1 (client certificates required) while in a ``with`` block."""

    def __init__(self, state: ApiState, pki: Pki) -> None:
        self.state = state
        self.pki = pki
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.state = state  # type: ignore[attr-defined]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        ctx.load_verify_locations(str(pki.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> KubeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
