"""firewalld configuration as zone XML in ``/etc/firewalld/zones`` (no ``firewall-offline-cmd`` in a chroot).

A zone file in ``/etc/firewalld/zones`` overrides the packaged one in ``/usr/lib/firewalld/zones``
(firewalld's own lookup order), so each changed zone is copied there and edited: ports and services go
to the default zone (``DefaultZone`` of ``/etc/firewalld/firewalld.conf``), zone sources to their zone.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from builder.blueprint.models import Firewall
from builder.stages import StageError

_PORT = re.compile(r"^([0-9]+(-[0-9]+)?|[a-z][a-z0-9-]*):(tcp|udp|sctp|dccp)$")


@dataclass(frozen=True)
class FirewallOptions:
    """The blueprint's ``[customizations.firewall]``."""

    firewall: Firewall = Firewall()


def default_zone(root: Path) -> str:
    conf = root / "etc/firewalld/firewalld.conf"
    if conf.exists():
        for line in conf.read_text().splitlines():
            if line.strip().startswith("DefaultZone="):
                return line.split("=", 1)[1].strip() or "public"
    return "public"


def _load_zone(root: Path, zone: str, where: str) -> ET.Element:
    for base in (root / "etc/firewalld/zones", root / "usr/lib/firewalld/zones"):
        path = base / f"{zone}.xml"
        if path.exists():
            return ET.parse(path).getroot()
    if not re.match(r"^[A-Za-z0-9_-]+$", zone):
        raise StageError(f'{where}: "{zone}" is not a valid firewalld zone name')
    elem = ET.Element("zone")
    ET.SubElement(elem, "short").text = zone
    return elem


def _known_service(root: Path, name: str) -> bool:
    return any((root / d / f"{name}.xml").exists() for d in ("etc/firewalld/services", "usr/lib/firewalld/services"))


def _port(spec: str, where: str) -> tuple[str, str]:
    m = _PORT.match(spec)
    if not m:
        raise StageError(f'{where}: "{spec}" is not a port such as "22:tcp", "8000-8080:tcp" or "https:tcp"')
    port, proto = m.group(1), m.group(3)
    if not port[0].isdigit():
        try:
            port = str(socket.getservbyname(port, proto))
        except OSError:
            raise StageError(f'{where}: unknown service name "{port}" for {proto}') from None
    for part in port.split("-"):
        if not 0 < int(part) < 65536:
            raise StageError(f'{where}: port {part} is out of range 1-65535')
    return port, proto


def _save(root: Path, zone: str, elem: ET.Element) -> None:
    ET.indent(elem, space="  ")
    dest = root / "etc/firewalld/zones" / f"{zone}.xml"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(elem, encoding="utf-8") + b"\n")
    os.chmod(dest, 0o644)


def _add_unique(elem: ET.Element, tag: str, attrs: dict[str, str]) -> None:
    for child in elem.findall(tag):
        if child.attrib == attrs:
            return
    ET.SubElement(elem, tag, attrs)


def apply(root: Path, options: FirewallOptions) -> None:
    """Open ports and services, close disabled services, assign zone sources."""
    fw = options.firewall
    if not (fw.ports or fw.services.enabled or fw.services.disabled or fw.zones):
        return
    if not (root / "usr/lib/firewalld").exists() and not (root / "etc/firewalld").exists():
        raise StageError("customizations.firewall: firewalld is not installed in the image; add it to packages")
    zone_name = default_zone(root)
    if fw.ports or fw.services.enabled or fw.services.disabled:
        zone = _load_zone(root, zone_name, "customizations.firewall")
        for i, svc in enumerate(fw.services.enabled):
            if not _known_service(root, svc):
                raise StageError(f'customizations.firewall.services.enabled[{i}]: unknown firewalld service "{svc}"')
            _add_unique(zone, "service", {"name": svc})
        for svc in fw.services.disabled:
            for child in zone.findall("service"):
                if child.get("name") == svc:
                    zone.remove(child)
        for i, spec in enumerate(fw.ports):
            port, proto = _port(spec, f"customizations.firewall.ports[{i}]")
            _add_unique(zone, "port", {"port": port, "protocol": proto})
        _save(root, zone_name, zone)
    for i, z in enumerate(fw.zones):
        where = f"customizations.firewall.zones[{i}]"
        name = z.name or zone_name
        zone = _load_zone(root, name, f"{where}.name")
        for j, src in enumerate(z.sources):
            try:
                ipaddress.ip_network(src, strict=False)
            except ValueError:
                if not re.match(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$|^ipset:", src):
                    raise StageError(f'{where}.sources[{j}]: "{src}" is not an address, CIDR, MAC or ipset') from None
            _add_unique(zone, "source", {"address": src})
        _save(root, name, zone)
