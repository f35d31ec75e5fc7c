"""Semantic rules of a blueprint beyond keys and types: osbuild's validation, then stricter.

Each rule names the key path it checks. Upstream sources mirrored here: semver ``version`` and
package names (``osbuild/blueprint`` ``pkg/blueprint/blueprint.go``), file and directory nodes
(``osbuild/images`` ``pkg/customizations/fsnode``, ``pkg/blueprint/fsnode_customizations.go``), the
ostree path policies (``pkg/pathpolicy`` + ``pkg/policies``), repositories
(``pkg/blueprint/repository_customizations.go``), FDO / Ignition / installer checks
(``pkg/distro/rhel/imagetype.go`` ``checkOptions``).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from builder import distro
from builder.blueprint.models import Blueprint, Customizations, Directory, FieldshiftSettings, File, Repository
from builder.blueprint.parse import Converter

# https://semver.org, the grammar github.com/coreos/go-semver accepts.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
# fsnode's user and group name patterns (also used for accounts).
USER_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$")
GROUP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,31}$")
MODE = re.compile(r"^0?[0-7]{3}$")
PACKAGE_NAME = re.compile(r"^[A-Za-z0-9_.+\-:@*?\[\]/]+$")
PACKAGE_VERSION = re.compile(r"^[A-Za-z0-9_.+~^:*?\[\]-]+$")
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+$")
PORT = re.compile(r"^(?:(\d+)(?:-(\d+))?|([a-z][a-z0-9-]*)):(tcp|udp|sctp|dccp)$")
FIREWALL_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
ZONE_NAME = re.compile(r"^[A-Za-z0-9_+-]{1,17}$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$")
HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
TIMEZONE = re.compile(r"^[A-Za-z0-9_+/-]+$")
REPO_FILENAME = re.compile(r"^[\w.-]{1,250}\.repo$")
REPO_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")
CHANNEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
OSTREE_REF = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
PGP_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
PGP_END = "-----END PGP PUBLIC KEY BLOCK-----"
ARCHITECTURES = ("x86_64", "aarch64")
PARTITIONING_MODES = ("auto-lvm", "lvm", "raw", "btrfs")
FS_TYPES = ("xfs", "ext4", "vfat", "btrfs", "swap")
PARTITION_TYPES = ("plain", "lvm", "btrfs")

# osbuild's OstreeCustomDirectoriesPolicies / OstreeCustomFilesPolicies (pkg/policies/policies.go):
# an ostree deployment only carries /etc (merged on update) and a few writable locations.
OSTREE_DIRECTORY_ROOTS = ("/etc",)
OSTREE_FILE_ROOTS = ("/etc", "/root", "/usr/local/bin", "/usr/local/sbin")
DENIED_FILES = ("/etc/fstab", "/etc/shadow", "/etc/passwd", "/etc/group")
# Mount points (osbuild's MountpointPoliciesFS and OstreeMountpointPolicies together): path -> denied.
# The longest matching prefix decides, as in pkg/pathpolicy. Stricter than osbuild: /usr is refused
# exactly too (on ostree it is the read-only deployment itself).
MOUNT_POLICY = {
    "/": False,
    "/etc": True, "/usr": True, "/sys": True, "/proc": True, "/dev": True, "/run": True, "/bin": True,
    "/sbin": True, "/lib": True, "/lib64": True, "/lost+found": True, "/sysroot": True, "/var/run": True,
    "/var/lock": True, "/boot/efi": True,
    # ostree: symlinks into /var, or directories ostree itself manages
    "/home": True, "/mnt": True, "/opt": True, "/ostree": True, "/root": True, "/srv": True, "/var/home": True,
    "/var/mnt": True, "/var/opt": True, "/var/roothome": True, "/var/srv": True, "/var/usrlocal": True,
}  # fmt: skip

# Distro spellings osbuild accepts for the distros we define (rhel-94, rhel-9.4, centos-9 …).
_DISTRO_ALIASES = (
    (re.compile(r"^rhel-9(?:\.?\d{1,2})?$"), "rhel-9"),
    (re.compile(r"^(?:centos|centos-stream)-9$"), "centos-stream-9"),
    (re.compile(r"^fedora-41$"), "fedora-41"),
    (re.compile(r"^debian-12$"), "debian-12"),
)


def canonical_distro(name: str) -> str:
    """The fieldshift distro for an osbuild distro name, or the name unchanged when none fits."""
    for pattern, canonical in _DISTRO_ALIASES:
        if pattern.match(name):
            return canonical
    return name


def check(blueprint: Blueprint, conv: Converter) -> None:
    """Raise :class:`BlueprintError` for the first rule ``blueprint`` breaks."""
    _top_level(blueprint, conv)
    _customizations(blueprint.customizations, conv)
    _fieldshift(blueprint.fieldshift, conv)


def _top_level(bp: Blueprint, conv: Converter) -> None:
    if not bp.name.strip():
        raise conv.error("name", "must not be empty")
    if any(ord(ch) < 32 for ch in bp.name) or "/" in bp.name:
        raise conv.error("name", "must not contain '/' or control characters")
    if not SEMVER.match(bp.version):
        raise conv.error("version", f'"{bp.version}" is not a semantic version (MAJOR.MINOR.PATCH, e.g. "1.0.0")')
    if bp.distro not in distro.names():
        raise conv.error("distro", _unknown(bp.distro, distro.names(), "distro"))
    if bp.architecture not in ARCHITECTURES:
        raise conv.error("architecture", _unknown(bp.architecture, ARCHITECTURES, "architecture"))
    for field_name, entries in (("packages", bp.packages), ("modules", bp.modules)):
        for i, pkg in enumerate(entries):
            where = f"{field_name}[{i}]"
            if not pkg.name:
                extra = f" (version is {pkg.version!r})" if pkg.version else ""
                raise conv.error(f"{where}.name", f"every package entry needs a name{extra}")
            if not PACKAGE_NAME.match(pkg.name):
                raise conv.error(f"{where}.name", f'"{pkg.name}" is not a package name')
            if pkg.version and not PACKAGE_VERSION.match(pkg.version):
                raise conv.error(f"{where}.version", f'"{pkg.version}" is not a version or version glob')
    _unique(conv, "packages", [(f"packages[{i}].name", p.name) for i, p in enumerate(bp.packages)], "package")
    for i, group in enumerate(bp.groups):
        if not group.name.strip():
            raise conv.error(f"groups[{i}].name", "must not be empty")
    for i, module in enumerate(bp.enabled_modules):
        if not module.name:
            raise conv.error(f"enabled_modules[{i}].name", "must not be empty")
        if not module.stream:
            raise conv.error(f"enabled_modules[{i}].stream", "is required (the module stream to enable)")
    for i, container in enumerate(bp.containers):
        if not container.source.strip():
            raise conv.error(f"containers[{i}].source", "must not be empty")
        if any(ch.isspace() for ch in container.source):
            raise conv.error(f"containers[{i}].source", "must not contain whitespace")


def _customizations(c: Customizations, conv: Converter) -> None:
    base = "customizations"
    if c.hostname is not None:
        _hostname(c.hostname, conv, f"{base}.hostname")
    if c.kernel is not None and c.kernel.name and not PACKAGE_NAME.match(c.kernel.name):
        raise conv.error(f"{base}.kernel.name", f'"{c.kernel.name}" is not a package name')
    for i, key in enumerate(c.sshkey):
        if not USER_NAME.match(key.user):
            raise conv.error(f"{base}.sshkey[{i}].user", f'"{key.user}" is not a valid user name')
        if not key.key.strip():
            raise conv.error(f"{base}.sshkey[{i}].key", "must not be empty")
    _users(c, conv)
    _groups(c, conv)
    if c.timezone is not None:
        tz = c.timezone.timezone
        if tz is not None and (not TIMEZONE.match(tz) or ".." in tz or tz.startswith("/")):
            raise conv.error(f"{base}.timezone.timezone", f'"{tz}" is not a time zone name (e.g. "Europe/Berlin")')
        for i, server in enumerate(c.timezone.ntpservers):
            if not server or any(ch.isspace() for ch in server):
                raise conv.error(f"{base}.timezone.ntpservers[{i}]", f'"{server}" is not a host name or address')
    if c.locale is not None:
        for i, lang in enumerate(c.locale.languages):
            if not lang or any(ch.isspace() for ch in lang):
                raise conv.error(f"{base}.locale.languages[{i}]", f'"{lang}" is not a locale (e.g. "en_US.UTF-8")')
    _firewall(c, conv)
    _services(c, conv)
    _storage(c, conv)
    _nodes(c, conv)
    for i, repo in enumerate(c.repositories):
        _repository(repo, conv, f"{base}.repositories[{i}]")
    repo_ids = [(f"{base}.repositories[{i}].id", r.id) for i, r in enumerate(c.repositories)]
    _unique(conv, f"{base}.repositories", repo_ids, "repository id")
    _provisioning(c, conv)
    if c.cacerts is not None:
        for i, pem in enumerate(c.cacerts.pem_certs):
            if "-----BEGIN CERTIFICATE-----" not in pem or "-----END CERTIFICATE-----" not in pem:
                raise conv.error(f"{base}.cacerts.pem_certs[{i}]", "is not a PEM certificate")
    if c.containers_storage is not None and c.containers_storage.destination_path is not None:
        _absolute(c.containers_storage.destination_path, conv, f"{base}.containers-storage.destination-path")
    if c.rpm is not None and c.rpm.import_keys is not None:
        for i, key_path in enumerate(c.rpm.import_keys.files):
            _absolute(key_path, conv, f"{base}.rpm.import_keys.files[{i}]")


def _hostname(name: str, conv: Converter, where: str) -> None:
    labels = name.split(".")
    if not name or len(name) > 253 or not all(HOST_LABEL.match(label) for label in labels):
        raise conv.error(where, f'"{name}" is not a valid host name (letters, digits, "-", dot-separated labels)')


def _users(c: Customizations, conv: Converter) -> None:
    base = "customizations.user"
    for i, user in enumerate(c.user):
        where = f"{base}[{i}]"
        if not USER_NAME.match(user.name):
            raise conv.error(f"{where}.name", f'"{user.name}" is not a valid user name ({USER_NAME.pattern})')
        for attr in ("home", "shell"):
            value = getattr(user, attr)
            if value is not None:
                _absolute(value, conv, f"{where}.{attr}")
        for j, group in enumerate(user.groups):
            if not GROUP_NAME.match(group):
                raise conv.error(f"{where}.groups[{j}]", f'"{group}" is not a valid group name')
        for attr in ("uid", "gid", "expiredate"):
            value = getattr(user, attr)
            if value is not None and value < 0:
                raise conv.error(f"{where}.{attr}", "must not be negative")
        if user.key is not None and not user.key.strip():
            raise conv.error(f"{where}.key", "must not be empty")
    _unique(conv, base, [(f"{base}[{i}].name", u.name) for i, u in enumerate(c.user)], "user name")
    _unique(conv, base, [(f"{base}[{i}].uid", u.uid) for i, u in enumerate(c.user) if u.uid is not None], "uid")


def _groups(c: Customizations, conv: Converter) -> None:
    base = "customizations.group"
    for i, group in enumerate(c.group):
        if not GROUP_NAME.match(group.name):
            raise conv.error(f"{base}[{i}].name", f'"{group.name}" is not a valid group name ({GROUP_NAME.pattern})')
        if group.gid is not None and group.gid < 0:
            raise conv.error(f"{base}[{i}].gid", "must not be negative")
    _unique(conv, base, [(f"{base}[{i}].name", g.name) for i, g in enumerate(c.group)], "group name")
    _unique(conv, base, [(f"{base}[{i}].gid", g.gid) for i, g in enumerate(c.group) if g.gid is not None], "gid")


def _firewall(c: Customizations, conv: Converter) -> None:
    base = "customizations.firewall"
    for i, port in enumerate(c.firewall.ports):
        m = PORT.match(port)
        if not m:
            raise conv.error(
                f"{base}.ports[{i}]", f'"{port}" is not PORT[-PORT]:PROTO or SERVICE:PROTO (e.g. "6443:tcp")'
            )
        if m.group(1):
            low = int(m.group(1))
            high = int(m.group(2)) if m.group(2) else low
            if not (1 <= low <= 65535 and 1 <= high <= 65535) or low > high:
                raise conv.error(f"{base}.ports[{i}]", f'"{port}": ports must be 1-65535 and ranges ascending')
    services = c.firewall.services
    for attr in ("enabled", "disabled"):
        for i, name in enumerate(getattr(services, attr)):
            if not FIREWALL_SERVICE.match(name):
                raise conv.error(f"{base}.services.{attr}[{i}]", f'"{name}" is not a firewalld service name')
    both = sorted(set(services.enabled) & set(services.disabled))
    if both:
        raise conv.error(f"{base}.services", f'"{both[0]}" is both enabled and disabled')
    for i, zone in enumerate(c.firewall.zones):
        where = f"{base}.zones[{i}]"
        if zone.name is None:
            raise conv.error(f"{where}.name", 'is required (e.g. "trusted")')
        if not ZONE_NAME.match(zone.name):
            raise conv.error(f"{where}.name", f'"{zone.name}" is not a firewalld zone name')
        for j, source in enumerate(zone.sources):
            if not _firewall_source(source):
                raise conv.error(
                    f"{where}.sources[{j}]", f'"{source}" is not an address, network (CIDR), MAC or ipset:NAME'
                )
    _unique(conv, f"{base}.zones", [(f"{base}.zones[{i}].name", z.name) for i, z in enumerate(c.firewall.zones)],
            "zone")  # fmt: skip


def _firewall_source(source: str) -> bool:
    if source.startswith("ipset:"):
        return bool(re.match(r"^ipset:[A-Za-z0-9_.-]+$", source))
    if MAC.match(source):
        return True
    try:
        ipaddress.ip_network(source, strict=False)
    except ValueError:
        return False
    return True


def _services(c: Customizations, conv: Converter) -> None:
    base = "customizations.services"
    lists = {"enabled": c.services.enabled, "disabled": c.services.disabled, "masked": c.services.masked}
    for attr, units in lists.items():
        for i, unit in enumerate(units):
            if not UNIT_NAME.match(unit):
                raise conv.error(f"{base}.{attr}[{i}]", f'"{unit}" is not a systemd unit name')
        _unique(conv, f"{base}.{attr}", [(f"{base}.{attr}[{i}]", u) for i, u in enumerate(units)], "unit")
    normalized = {attr: {_unit(u) for u in units} for attr, units in lists.items()}
    for first, second in (("enabled", "disabled"), ("enabled", "masked"), ("disabled", "masked")):
        both = sorted(normalized[first] & normalized[second])
        if both:
            raise conv.error(base, f'"{both[0]}" is both {first} and {second}')


def _unit(name: str) -> str:
    return name if "." in name.rsplit("@", 1)[-1] else f"{name}.service"


def _storage(c: Customizations, conv: Converter) -> None:
    base = "customizations"
    for i, fs in enumerate(c.filesystem):
        where = f"{base}.filesystem[{i}]"
        _mountpoint(fs.mountpoint, conv, f"{where}.mountpoint")
        if fs.minsize <= 0:
            raise conv.error(f"{where}.minsize", "must be greater than 0")
    _unique(conv, f"{base}.filesystem",
            [(f"{base}.filesystem[{i}].mountpoint", f.mountpoint) for i, f in enumerate(c.filesystem)],
            "mount point")  # fmt: skip
    if c.disk is not None:
        if c.filesystem:
            raise conv.error(f"{base}.disk", "cannot be combined with customizations.filesystem; use one of them")
        mounts: list[tuple[str, str]] = []
        for i, part in enumerate(c.disk.partitions):
            where = f"{base}.disk.partitions[{i}]"
            if part.type not in PARTITION_TYPES:
                raise conv.error(f"{where}.type", _unknown(part.type, PARTITION_TYPES, "partition type"))
            if part.fs_type and part.fs_type not in FS_TYPES:
                raise conv.error(f"{where}.fs_type", _unknown(part.fs_type, FS_TYPES, "file system type"))
            if part.mountpoint:
                _mountpoint(part.mountpoint, conv, f"{where}.mountpoint")
                mounts.append((f"{where}.mountpoint", part.mountpoint))
            for j, lv in enumerate(part.logical_volumes):
                if lv.fs_type and lv.fs_type not in FS_TYPES:
                    raise conv.error(f"{where}.logical_volumes[{j}].fs_type", _unknown(lv.fs_type, FS_TYPES, "fs type"))
                if lv.mountpoint:
                    _mountpoint(lv.mountpoint, conv, f"{where}.logical_volumes[{j}].mountpoint")
                    mounts.append((f"{where}.logical_volumes[{j}].mountpoint", lv.mountpoint))
            for j, sv in enumerate(part.subvolumes):
                if sv.mountpoint:
                    _mountpoint(sv.mountpoint, conv, f"{where}.subvolumes[{j}].mountpoint")
                    mounts.append((f"{where}.subvolumes[{j}].mountpoint", sv.mountpoint))
            if part.type != "lvm" and part.logical_volumes:
                raise conv.error(f"{where}.logical_volumes", 'only a partition of type "lvm" has logical volumes')
            if part.type != "btrfs" and part.subvolumes:
                raise conv.error(f"{where}.subvolumes", 'only a partition of type "btrfs" has subvolumes')
        _unique(conv, f"{base}.disk", mounts, "mount point")
    if c.partitioning_mode is not None and c.partitioning_mode not in PARTITIONING_MODES:
        raise conv.error(f"{base}.partitioning_mode", _unknown(c.partitioning_mode, PARTITIONING_MODES, "mode"))
    if c.installation_device is not None:
        _absolute(c.installation_device, conv, f"{base}.installation_device")
        if not c.installation_device.startswith("/dev/"):
            raise conv.error(f"{base}.installation_device", 'must be a device path under /dev (e.g. "/dev/vda")')


def _mountpoint(path: str, conv: Converter, where: str) -> None:
    _canonical(path, conv, where)
    prefix = path
    while prefix not in MOUNT_POLICY:
        prefix = posixpath.dirname(prefix)
    if MOUNT_POLICY[prefix]:
        raise conv.error(where, f'"{path}" cannot be a mount point on an ostree system (it is under {prefix})')


def _nodes(c: Customizations, conv: Converter) -> None:
    """Files and directories: fsnode rules, the ostree path policy, and how they relate."""
    base = "customizations"
    nodes: dict[str, str] = {}
    for i, d in enumerate(c.directories):
        where = f"{base}.directories[{i}]"
        _node(d, conv, where)
        _policy(d.path, OSTREE_DIRECTORY_ROOTS, conv, f"{where}.path", "directories")
        _remember(nodes, d.path, f"{where}.path", conv)
    files_at: set[str] = set()
    for i, f in enumerate(c.files):
        where = f"{base}.files[{i}]"
        _node(f, conv, where)
        _policy(f.path, OSTREE_FILE_ROOTS, conv, f"{where}.path", "files")
        if f.data is not None and f.uri is not None:
            raise conv.error(where, 'give either "data" or "uri", not both')
        if f.uri is not None:
            _file_uri(f.uri, conv, f"{where}.uri")
        _remember(nodes, f.path, f"{where}.path", conv)
        files_at.add(f.path)
    # osbuild's ValidateDirFileCustomizations: a file cannot be the parent of another node.
    for path, where in nodes.items():
        parent = posixpath.dirname(path)
        while parent not in ("/", ""):
            if parent in files_at:
                raise conv.error(where, f'"{path}" is inside "{parent}", which is a file in customizations.files')
            parent = posixpath.dirname(parent)


def _remember(nodes: dict[str, str], path: str, where: str, conv: Converter) -> None:
    if path in nodes:
        raise conv.error(where, f'"{path}" is already created by {nodes[path]}')
    nodes[path] = where


def _node(node: Directory | File, conv: Converter, where: str) -> None:
    _canonical(node.path, conv, f"{where}.path")
    if node.mode is not None and not MODE.match(node.mode):
        raise conv.error(f"{where}.mode", f'"{node.mode}" is not an octal mode like "0644" or "755"')
    for attr, pattern in (("user", USER_NAME), ("group", GROUP_NAME)):
        owner = getattr(node, attr)
        if isinstance(owner, str) and not pattern.match(owner):
            raise conv.error(f"{where}.{attr}", f'"{owner}" is not a valid {attr} name')
        if isinstance(owner, int) and owner < 0:
            raise conv.error(f"{where}.{attr}", "must not be negative")


def _canonical(path: str, conv: Converter, where: str) -> None:
    if not path:
        raise conv.error(where, "must not be empty")
    if not path.startswith("/"):
        raise conv.error(where, f'"{path}" must be absolute')
    if path != "/" and path.endswith("/"):
        raise conv.error(where, f'"{path}" must not end with "/"')
    if ".." in path.split("/"):
        raise conv.error(where, f'"{path}" must not contain ".."')
    if "\0" in path or posixpath.normpath(path) != path or path.startswith("//"):
        raise conv.error(where, f'"{path}" is not canonical (write it as "{posixpath.normpath(path)}")')


def _absolute(path: str, conv: Converter, where: str) -> None:
    if not path.startswith("/"):
        raise conv.error(where, f'"{path}" must be an absolute path')


def _policy(path: str, roots: Iterable[str], conv: Converter, where: str, what: str) -> None:
    if path in DENIED_FILES:
        raise conv.error(where, f'"{path}" must not be written by a customization (use user/group customizations)')
    if not any(path == root or path.startswith(root + "/") for root in roots):
        allowed = ", ".join(roots)
        raise conv.error(where, f'"{path}" is outside what ostree images keep for {what} (allowed under: {allowed})')


def _file_uri(uri: str, conv: Converter, where: str) -> None:
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise conv.error(where, f'"{uri}": only local files (a path or file:// URL) can be embedded')
    local = Path(parsed.path if parsed.scheme == "file" else uri)
    target = local if local.is_absolute() else conv.ctx.base_dir / local
    if not target.is_file():
        raise conv.error(where, f'"{uri}" does not name a readable file (relative paths start at the blueprint)')


def _repository(repo: Repository, conv: Converter, where: str) -> None:
    if not repo.id:
        raise conv.error(f"{where}.id", "is required")
    if not REPO_ID.match(repo.id):
        raise conv.error(f"{where}.id", f'"{repo.id}" is not a repository id (letters, digits, "_.:-")')
    filename = repo.filename or f"{repo.id}.repo"
    if not filename.endswith(".repo"):
        filename += ".repo"
    if not REPO_FILENAME.match(filename):
        raise conv.error(f"{where}.filename", f'"{repo.filename}" is not a valid .repo file name')
    if not (repo.baseurls or repo.mirrorlist or repo.metalink):
        raise conv.error(where, "needs baseurls, mirrorlist or metalink")
    for i, url in enumerate(repo.baseurls):
        _url(url, conv, f"{where}.baseurls[{i}]", ("http", "https", "file", "ftp"))
    for attr in ("mirrorlist", "metalink"):
        if getattr(repo, attr):
            _url(getattr(repo, attr), conv, f"{where}.{attr}", ("http", "https", "file", "ftp"))
    if repo.gpgcheck and not repo.gpgkeys:
        raise conv.error(f"{where}.gpgkeys", "gpgcheck is true, so at least one GPG key (URL or key block) is needed")
    for i, key_text in enumerate(repo.gpgkeys):
        is_block = key_text.startswith(PGP_BEGIN) and PGP_END in key_text
        parsed = urlparse(key_text)
        if not is_block and not (parsed.scheme and (parsed.netloc or parsed.path)):
            raise conv.error(f"{where}.gpgkeys[{i}]", "is neither a URL nor an ASCII-armored PGP public key")
    if repo.priority is not None and repo.priority < 1:
        raise conv.error(f"{where}.priority", "must be 1 or more")


def _url(url: str, conv: Converter, where: str, schemes: tuple[str, ...]) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in schemes or not (parsed.netloc or (parsed.scheme == "file" and parsed.path)):
        raise conv.error(where, f'"{url}" is not a URL ({", ".join(schemes)})')


def _provisioning(c: Customizations, conv: Converter) -> None:
    base = "customizations"
    if c.fdo is not None:
        if not c.fdo.manufacturing_server_url:
            raise conv.error(f"{base}.fdo.manufacturing_server_url", "is required when FDO is configured")
        _url(c.fdo.manufacturing_server_url, conv, f"{base}.fdo.manufacturing_server_url", ("http", "https"))
        diun = [k for k in ("diun_pub_key_hash", "diun_pub_key_insecure", "diun_pub_key_root_certs")
                if getattr(c.fdo, k)]  # fmt: skip
        if len(diun) != 1:
            raise conv.error(
                f"{base}.fdo",
                "set exactly one of diun_pub_key_hash, diun_pub_key_insecure, diun_pub_key_root_certs",
            )
    if c.ignition is not None:
        if c.ignition.embedded is not None and c.ignition.firstboot is not None:
            raise conv.error(f"{base}.ignition", "give either embedded or firstboot, not both")
        fb = c.ignition.firstboot
        if fb is not None:
            if fb.url and fb.empty:
                raise conv.error(f"{base}.ignition.firstboot", "url and empty exclude each other")
            if not fb.url and not fb.empty:
                raise conv.error(f"{base}.ignition.firstboot.url", "is required (the provisioning URL)")
            if fb.url:
                _url(fb.url, conv, f"{base}.ignition.firstboot.url", ("http", "https", "tftp"))
        if c.ignition.embedded is not None and not c.ignition.embedded.config:
            raise conv.error(f"{base}.ignition.embedded.config", "must not be empty")
    inst = c.installer
    if inst is not None:
        has_kickstart = inst.kickstart is not None and bool(inst.kickstart.contents)
        if has_kickstart and inst.unattended:
            raise conv.error(f"{base}.installer.unattended", "is not supported together with kickstart contents")
        if has_kickstart and inst.sudo_nopasswd:
            raise conv.error(f"{base}.installer.sudo-nopasswd", "is not supported together with kickstart contents")
        if has_kickstart and (c.user or c.group or c.sshkey):
            raise conv.error(f"{base}.installer.kickstart", "cannot be combined with user or group customizations")
        if inst.modules is not None and (c.user or c.group) and any(
            m.endswith("Users") for m in inst.modules.disable
        ):
            raise conv.error(f"{base}.installer.modules.disable", "disables the Users module but users are defined")
        if inst.menu_timeout is not None and inst.menu_timeout < -1:
            raise conv.error(f"{base}.installer.menu-timeout", "must be -1 (wait) or more")
    if c.iso is not None and len(c.iso.volume_id) > 32:
        raise conv.error(f"{base}.iso.volume_id", "must be at most 32 characters")


def _fieldshift(fs: FieldshiftSettings, conv: Converter) -> None:
    base = "fieldshift"
    if not CHANNEL.match(fs.channel):
        raise conv.error(f"{base}.channel", f'"{fs.channel}" is not a channel name (lowercase letters, digits, "._-")')
    if fs.release_url is not None:
        _url(fs.release_url, conv, f"{base}.release_url", ("http", "https", "file"))
    if fs.ref is not None and not OSTREE_REF.match(fs.ref):
        raise conv.error(f"{base}.ref", f'"{fs.ref}" is not an ostree ref (e.g. "rhel/9/x86_64/edge")')
    for i, key_path in enumerate(fs.trusted_keys):
        if not key_path.is_file():
            raise conv.error(
                f"{base}.trusted_keys[{i}]",
                f'"{key_path}" does not exist (create keys with: fieldshift keys generate --out DIR)',
            )
    g = fs.greenboot
    if not 1 <= g.max_boot_attempts <= 100:
        raise conv.error(f"{base}.greenboot.max_boot_attempts", "must be between 1 and 100")
    if g.watchdog_grace_period is not None and g.watchdog_grace_period < 0:
        raise conv.error(f"{base}.greenboot.watchdog_grace_period", "must not be negative")
    for i, name in enumerate(g.disabled_healthchecks):
        if not name or "/" in name:
            raise conv.error(f"{base}.greenboot.disabled_healthchecks[{i}]", "must be a check script's file name")
    for i, manifest in enumerate(fs.microshift.manifests):
        if not manifest.is_dir():
            raise conv.error(f"{base}.microshift.manifests[{i}]", f'"{manifest}" is not a directory')
    _agent_table(fs, conv)


def _agent_table(fs: FieldshiftSettings, conv: Converter) -> None:
    """``[fieldshift.agent]`` is the agent's own config format: its owner validates it."""
    try:
        from updater import config as agent_config  # the device side owns this format
    except ImportError:
        return
    validate_table = getattr(agent_config, "validate_table", None)
    if validate_table is None:
        return
    from greenboot.errors import UserError

    try:
        validate_table(dict(fs.agent), "fieldshift.agent")
    except UserError as err:
        raise conv.error("", err.message) from None
    except (TypeError, ValueError, AttributeError, KeyError) as err:
        # The agent's validator must raise UserError; a crash there is still bad input here.
        raise conv.error("fieldshift.agent", f"invalid agent settings ({type(err).__name__}: {err})") from None


def _unique(conv: Converter, where: str, items: Sequence[tuple[str, object]], what: str) -> None:
    seen: dict[object, str] = {}
    for path, value in items:
        if value in seen:
            raise conv.error(path, f'duplicate {what} "{value}" (also at {seen[value]})')
        seen[value] = path


def _unknown(value: str, known: Iterable[str], what: str) -> str:
    import difflib

    options = list(known)
    close = difflib.get_close_matches(value, options, n=1)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f'unknown {what} "{value}"{hint} (known: {", ".join(options)})'
