"""Typed, frozen models of an osbuild blueprint plus fieldshift's own ``[fieldshift]`` table.

The field set mirrors osbuild's blueprint structs (``osbuild/blueprint`` ``pkg/blueprint/blueprint.go``
and ``customizations.go``, ``osbuild/images`` ``pkg/blueprint/*``). Field metadata carries the
TOML key when it differs from the Python name (``tls-verify`` -> ``tls_verify``); the parser
(:mod:`builder.blueprint.parse`) reads these annotations, so the models are the single schema.

Values are normalized: absent lists are empty tuples, absent optional scalars are ``None``,
plain-text passwords are already SHA-512 crypt hashes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Optional, Union


def key(name: str, **extra: Any) -> dict[str, Any]:
    """Field metadata naming the TOML key of a field whose Python name differs."""
    return {"key": name, **extra}


def _empty_table() -> Mapping[str, Any]:
    return MappingProxyType({})


# An owner given as a name or as a numeric id (osbuild's fsnode ``user``/``group``).
Owner = Union[str, int]
# A size given in bytes or as a string with a unit ("10 GiB"); normalized to bytes.
Size = int


@dataclass(frozen=True)
class Package:
    """An RPM (or deb) to install; ``version`` is a glob such as ``4.18.*`` or empty for any."""

    name: str
    version: str = ""

    @property
    def spec(self) -> str:
        """The ``name-version`` string dnf understands (osbuild's ``ToNameVersion``)."""
        if self.version in ("", "*"):
            return self.name
        return f"{self.name}-{self.version}"


@dataclass(frozen=True)
class PackageGroup:
    """A comps package group, installed as ``@name``."""

    name: str


@dataclass(frozen=True)
class EnabledModule:
    """A modularity stream to enable (``name:stream``)."""

    name: str
    stream: str = ""


@dataclass(frozen=True)
class Container:
    """A container image to embed into the image's container storage."""

    source: str
    name: str = ""
    tls_verify: Optional[bool] = field(default=None, metadata=key("tls-verify"))
    local_storage: bool = field(default=False, metadata=key("local-storage"))


@dataclass(frozen=True)
class Kernel:
    """Kernel package name and extra command line arguments."""

    name: str = "kernel"
    append: str = ""


@dataclass(frozen=True)
class SSHKey:
    """Legacy ``[[customizations.sshkey]]``: an authorized key for an existing user."""

    user: str
    key: str


@dataclass(frozen=True)
class User:
    """A user account; ``password`` is always a crypt(3) hash here (plain text is hashed on load)."""

    name: str
    description: Optional[str] = None
    password: Optional[str] = None
    key: Optional[str] = None
    home: Optional[str] = None
    shell: Optional[str] = None
    groups: tuple[str, ...] = ()
    uid: Optional[int] = None
    gid: Optional[int] = None
    expiredate: Optional[int] = None
    force_password_reset: Optional[bool] = None


@dataclass(frozen=True)
class Group:
    """A group account."""

    name: str
    gid: Optional[int] = None


@dataclass(frozen=True)
class Timezone:
    """Time zone name and NTP servers."""

    timezone: Optional[str] = None
    ntpservers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Locale:
    """Languages (first is the system locale) and console keyboard layout."""

    languages: tuple[str, ...] = ()
    keyboard: Optional[str] = None


@dataclass(frozen=True)
class FirewallServices:
    """firewalld services to open or close in the default zone."""

    enabled: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()


@dataclass(frozen=True)
class FirewallZone:
    """A firewalld zone and the source networks assigned to it (e.g. ``trusted``)."""

    name: Optional[str] = None
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Firewall:
    """Ports (``port[-port]:proto`` or a service name), services and zones."""

    ports: tuple[str, ...] = ()
    services: FirewallServices = field(default_factory=FirewallServices)
    zones: tuple[FirewallZone, ...] = ()


@dataclass(frozen=True)
class Services:
    """systemd units to enable, disable or mask."""

    enabled: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    masked: tuple[str, ...] = ()


@dataclass(frozen=True)
class Filesystem:
    """A mount point and its minimum size in bytes (``size`` is accepted as an alias)."""

    mountpoint: str
    minsize: Size = 0


@dataclass(frozen=True)
class LogicalVolume:
    """An LVM logical volume inside a ``lvm`` partition."""

    name: str = ""
    minsize: Size = 0
    mountpoint: str = ""
    label: str = ""
    fs_type: str = ""


@dataclass(frozen=True)
class BtrfsSubvolume:
    """A btrfs subvolume inside a ``btrfs`` partition."""

    name: str
    mountpoint: str = ""


@dataclass(frozen=True)
class Partition:
    """A partition of ``[customizations.disk]``: plain filesystem, LVM volume group or btrfs."""

    type: str = "plain"
    minsize: Size = 0
    part_type: str = ""
    part_label: str = ""
    part_uuid: str = ""
    mountpoint: str = ""
    label: str = ""
    fs_type: str = ""
    name: str = ""
    logical_volumes: tuple[LogicalVolume, ...] = ()
    subvolumes: tuple[BtrfsSubvolume, ...] = ()


@dataclass(frozen=True)
class Disk:
    """Full disk layout."""

    type: str = ""
    minsize: Size = 0
    partitions: tuple[Partition, ...] = ()


@dataclass(frozen=True)
class FDO:
    """FIDO Device Onboarding settings (simplified installer)."""

    manufacturing_server_url: str = ""
    diun_pub_key_insecure: str = ""
    diun_pub_key_hash: str = ""
    diun_pub_key_root_certs: str = ""
    di_mfg_string_type_mac_iface: str = ""


@dataclass(frozen=True)
class OpenSCAPTailoring:
    """Rules selected and unselected on top of an OpenSCAP profile."""

    selected: tuple[str, ...] = ()
    unselected: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpenSCAPJSONTailoring:
    """A JSON tailoring file for an OpenSCAP profile."""

    profile_id: str = ""
    filepath: str = ""


@dataclass(frozen=True)
class OpenSCAP:
    """OpenSCAP remediation at build time."""

    datastream: str = ""
    profile_id: str = ""
    tailoring: Optional[OpenSCAPTailoring] = None
    json_tailoring: Optional[OpenSCAPJSONTailoring] = None
    policy_id: str = ""


@dataclass(frozen=True)
class IgnitionEmbedded:
    """An Ignition config embedded in the image (base64)."""

    config: str = ""


@dataclass(frozen=True)
class IgnitionFirstBoot:
    """Fetch an Ignition config at first boot from ``url``."""

    url: str = ""
    empty: bool = False


@dataclass(frozen=True)
class Ignition:
    """Ignition provisioning."""

    embedded: Optional[IgnitionEmbedded] = None
    firstboot: Optional[IgnitionFirstBoot] = None


@dataclass(frozen=True)
class Directory:
    """A directory to create (osbuild's ``DirectoryCustomization``)."""

    path: str
    user: Optional[Owner] = None
    group: Optional[Owner] = None
    mode: Optional[str] = None
    ensure_parents: bool = False


@dataclass(frozen=True)
class File:
    """A file to create with inline ``data`` (or, for ours, a ``uri`` relative to the blueprint)."""

    path: str
    user: Optional[Owner] = None
    group: Optional[Owner] = None
    mode: Optional[str] = None
    data: Optional[str] = None
    uri: Optional[str] = None


@dataclass(frozen=True)
class Repository:
    """An extra package repository (written to ``/etc/yum.repos.d/<filename>``, used to depsolve)."""

    id: str
    baseurls: tuple[str, ...] = ()
    gpgkeys: tuple[str, ...] = ()
    metalink: str = ""
    mirrorlist: str = ""
    name: str = ""
    priority: Optional[int] = None
    enabled: Optional[bool] = None
    gpgcheck: Optional[bool] = None
    repo_gpgcheck: Optional[bool] = None
    sslverify: Optional[bool] = None
    module_hotfixes: Optional[bool] = None
    filename: str = ""
    install_from: Optional[bool] = None


@dataclass(frozen=True)
class Kickstart:
    """Extra kickstart contents for installer images."""

    contents: str = ""


@dataclass(frozen=True)
class AnacondaModules:
    """Anaconda modules to enable or disable."""

    enable: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()


@dataclass(frozen=True)
class Installer:
    """Installer (Anaconda) behaviour."""

    unattended: bool = False
    sudo_nopasswd: tuple[str, ...] = field(default=(), metadata=key("sudo-nopasswd"))
    kickstart: Optional[Kickstart] = None
    modules: Optional[AnacondaModules] = None
    menu_timeout: Optional[int] = field(default=None, metadata=key("menu-timeout"))


@dataclass(frozen=True)
class RPMImportKeys:
    """GPG key files to import into the image's rpm database."""

    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class RPM:
    """rpm settings."""

    import_keys: Optional[RPMImportKeys] = None


@dataclass(frozen=True)
class DNFPlugin:
    """Enable or disable one dnf plugin."""

    enabled: Optional[bool] = None


@dataclass(frozen=True)
class RHSMDNFPlugins:
    """subscription-manager's dnf plugins."""

    product_id: Optional[DNFPlugin] = None
    subscription_manager: Optional[DNFPlugin] = None


@dataclass(frozen=True)
class RHSMSection:
    """``[rhsm]`` of rhsm.conf."""

    manage_repos: Optional[bool] = None
    auto_enable_yum_plugins: Optional[bool] = None


@dataclass(frozen=True)
class RHSMCertd:
    """``[rhsmcertd]`` of rhsm.conf."""

    auto_registration: Optional[bool] = None


@dataclass(frozen=True)
class SubscriptionManager:
    """rhsm.conf sections."""

    rhsm: Optional[RHSMSection] = None
    rhsmcertd: Optional[RHSMCertd] = None


@dataclass(frozen=True)
class RHSMConfig:
    """Red Hat Subscription Manager configuration."""

    dnf_plugins: Optional[RHSMDNFPlugins] = None
    subscription_manager: Optional[SubscriptionManager] = None


@dataclass(frozen=True)
class RHSM:
    """``[customizations.rhsm]``."""

    config: Optional[RHSMConfig] = None


@dataclass(frozen=True)
class CACerts:
    """Extra trusted CA certificates (PEM)."""

    pem_certs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainersStorage:
    """Where embedded containers are stored."""

    destination_path: Optional[str] = field(default=None, metadata=key("destination-path"))


@dataclass(frozen=True)
class DNFConfig:
    """dnf.conf settings written into the image."""

    set_releasever: bool = False


@dataclass(frozen=True)
class DNF:
    """``[customizations.dnf]``."""

    config: Optional[DNFConfig] = None


@dataclass(frozen=True)
class ISO:
    """ISO image settings (installer types)."""

    volume_id: str = ""


@dataclass(frozen=True)
class Firstboot:
    """A script run once at first boot (``custom``, ``satellite`` registration or ``aap`` callback)."""

    type: str = ""
    name: str = ""
    ignore_failure: bool = False
    custom_contents: str = ""
    satellite_cacerts: tuple[str, ...] = ()
    satellite_command: str = ""
    aap_cacerts: tuple[str, ...] = ()
    aap_job_template_url: str = ""
    aap_host_config_key: str = ""


@dataclass(frozen=True)
class Sshd:
    """sshd_config settings (``permit_root_login`` is a boolean or an sshd keyword)."""

    password_authentication: Optional[bool] = None
    challenge_response_authentication: Optional[bool] = None
    client_alive_interval: Optional[int] = None
    permit_root_login: Optional[Union[bool, str]] = None


@dataclass(frozen=True)
class Customizations:
    """``[customizations]``: every section osbuild's blueprint knows.

    ``firewall`` and ``services`` are always present (empty when not given) so consumers need no
    ``None`` checks; :attr:`present` lists the TOML keys the blueprint actually set.
    """

    hostname: Optional[str] = None
    kernel: Optional[Kernel] = None
    sshkey: tuple[SSHKey, ...] = ()
    user: tuple[User, ...] = ()
    group: tuple[Group, ...] = ()
    timezone: Optional[Timezone] = None
    locale: Optional[Locale] = None
    firewall: Firewall = field(default_factory=Firewall)
    services: Services = field(default_factory=Services)
    filesystem: tuple[Filesystem, ...] = ()
    disk: Optional[Disk] = None
    installation_device: Optional[str] = None
    partitioning_mode: Optional[str] = None
    fdo: Optional[FDO] = None
    openscap: Optional[OpenSCAP] = None
    ignition: Optional[Ignition] = None
    directories: tuple[Directory, ...] = ()
    files: tuple[File, ...] = ()
    repositories: tuple[Repository, ...] = ()
    fips: Optional[bool] = None
    installer: Optional[Installer] = None
    rpm: Optional[RPM] = None
    rhsm: Optional[RHSM] = None
    cacerts: Optional[CACerts] = None
    containers_storage: Optional[ContainersStorage] = field(default=None, metadata=key("containers-storage"))
    dnf: Optional[DNF] = None
    iso: Optional[ISO] = None
    firstboot: Optional[Firstboot] = None
    sshd: Optional[Sshd] = None
    present: frozenset[str] = field(default=frozenset(), metadata={"internal": True})

    @property
    def users(self) -> tuple[User, ...]:
        """``user`` entries plus legacy ``sshkey`` entries (as key-only users), like osbuild's GetUsers."""
        from_keys = tuple(User(name=k.user, key=k.key) for k in self.sshkey)
        return from_keys + self.user


@dataclass(frozen=True)
class GreenbootSettings:
    """``[fieldshift.greenboot]``: written as ``/etc/greenboot/greenboot.conf`` keys."""

    max_boot_attempts: int = 3
    disabled_healthchecks: tuple[str, ...] = ()
    watchdog_check_enabled: Optional[bool] = None
    watchdog_grace_period: Optional[int] = None


@dataclass(frozen=True)
class MicroshiftSettings:
    """``[fieldshift.microshift]``: MicroShift settings beyond plain files.

    ``config`` is merged into ``/etc/microshift/config.d/50-fieldshift.yaml`` (MicroShift's own
    schema, not checked here); ``manifests`` are kustomize directories (relative to the blueprint)
    copied to ``/etc/microshift/manifests.d/``.
    """

    config: Mapping[str, Any] = field(default_factory=_empty_table, metadata={"open": True})
    manifests: tuple[Path, ...] = field(default=(), metadata={"relative_path": True})


@dataclass(frozen=True)
class FieldshiftSettings:
    """``[fieldshift]``: everything osbuild has no key for (update channel, release URL, agent …)."""

    channel: str = "stable"
    release_url: Optional[str] = None
    ref: Optional[str] = None
    trusted_keys: tuple[Path, ...] = field(default=(), metadata={"relative_path": True})
    install_agent: bool = True
    install_greenboot: bool = True
    agent: Mapping[str, Any] = field(default_factory=_empty_table, metadata={"open": True})
    greenboot: GreenbootSettings = field(default_factory=GreenbootSettings)
    microshift: MicroshiftSettings = field(default_factory=MicroshiftSettings)


@dataclass(frozen=True)
class Blueprint:
    """A parsed, validated blueprint: what to build, ready for the compose pipeline.

    ``image_type`` is the type it was validated for; ``source_digest`` is the SHA-256 (hex) of the
    rendered TOML text; ``source_path`` is the file it came from.
    """

    name: str
    description: str = ""
    version: str = "0.0.0"
    distro: str = "rhel-9"
    architecture: str = "x86_64"
    packages: tuple[Package, ...] = ()
    modules: tuple[Package, ...] = ()
    groups: tuple[PackageGroup, ...] = ()
    enabled_modules: tuple[EnabledModule, ...] = ()
    containers: tuple[Container, ...] = ()
    customizations: Customizations = field(default_factory=Customizations)
    minimal: bool = False
    fieldshift: FieldshiftSettings = field(default_factory=FieldshiftSettings)
    image_type: str = field(default="edge-commit", metadata={"internal": True})
    source_digest: str = field(default="", metadata={"internal": True})
    source_path: Optional[Path] = field(default=None, metadata={"internal": True})

    @property
    def package_specs(self) -> tuple[str, ...]:
        """Packages, modules and ``@groups`` as dnf install specs (without the distro base set)."""
        specs = [p.spec for p in self.packages] + [m.spec for m in self.modules]
        return tuple(specs + [f"@{g.name}" for g in self.groups])


def toml_key(f: dataclasses.Field[Any]) -> str:
    """The TOML key of a model field."""
    return str(f.metadata.get("key", f.name))


def public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a model that come from the TOML document (not computed by the loader)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
