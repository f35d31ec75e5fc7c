"""Every blueprint rule: a valid case passes, each invalid case names the exact key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from builder.blueprint import Blueprint, BlueprintError, Kernel, rules
from builder.blueprint.parse import Context, Converter
from tests.blueprint.conftest import LoadText

HEAD = 'name = "t"\n'


def kernel_of(bp: Blueprint) -> Kernel:
    assert bp.customizations.kernel is not None
    return bp.customizations.kernel

# (id, TOML after HEAD, image type, exact key path, fragment of the message)
INVALID = [
    ("unknown top-level key", 'packges = []', None, "packges", 'did you mean "packages"'),
    ("unknown customization", '[customizations]\nfirewal = {}', None, "customizations.firewal",
     'did you mean "firewall"'),
    ("unknown key in user", '[[customizations.user]]\nname = "a"\npasword = "x"', None,
     "customizations.user[0].pasword", 'did you mean "password"'),
    ("unknown key in second user", '[[customizations.user]]\nname = "a"\n[[customizations.user]]\nname = "b"\nuid2 = 1',
     None, "customizations.user[1].uid2", "unknown key"),
    ("unknown key in fieldshift", '[fieldshift]\nchanel = "x"', None, "fieldshift.chanel", 'did you mean "channel"'),
    ("unknown key in fieldshift.greenboot", '[fieldshift.greenboot]\nmax_boot_attempt = 2', None,
     "fieldshift.greenboot.max_boot_attempt", 'did you mean "max_boot_attempts"'),
    ("missing name", '# no name\ndescription = "x"', None, "name", "is required"),
    ("empty name", 'name = ""', None, "name", "must not be empty"),
    ("name wrong type", 'name = 5', None, "name", "expected a string, got an integer"),
    ("version not semver", 'version = "1.0"', None, "version", "semantic version"),
    ("version wrong type", 'version = 1', None, "version", "expected a string"),
    ("package without name", '[[packages]]\nversion = "1.0"', None, "packages[0].name", "is required"),
    ("package empty name", '[[packages]]\nname = ""\nversion = "1.0"', None, "packages[0].name", "needs a name"),
    ("package with space", '[[packages]]\nname = "a b"', None, "packages[0].name", "not a package name"),
    ("duplicate package", '[[packages]]\nname = "a"\n[[packages]]\nname = "a"', None, "packages[1].name", "duplicate"),
    ("packages not array", 'packages = "vim"', None, "packages", "expected an array"),
    ("package entry not table", 'packages = ["vim"]', None, "packages[0]", "expected a table"),
    ("unknown distro", 'distro = "rhel-7"', None, "distro", "unknown distro"),
    ("unknown architecture", 'architecture = "ppc64le"', None, "architecture", "unknown architecture"),
    ("enabled module without stream", '[[enabled_modules]]\nname = "nodejs"', None, "enabled_modules[0].stream",
     "is required"),
    ("container without source", '[[containers]]\nname = "x"', None, "containers[0].source", "is required"),
    ("container tls-verify wrong type", '[[containers]]\nsource = "q.io/a"\ntls-verify = "yes"', None,
     "containers[0].tls-verify", "expected a boolean"),
    ("hostname invalid", '[customizations]\nhostname = "bad_host!"', None, "customizations.hostname", "host name"),
    ("hostname wrong type", '[customizations]\nhostname = ["a"]', None, "customizations.hostname",
     "expected a string, got an array"),
    ("user name pattern", '[[customizations.user]]\nname = "bad user"', None, "customizations.user[0].name",
     "not a valid user name"),
    ("user uid negative", '[[customizations.user]]\nname = "a"\nuid = -1', None, "customizations.user[0].uid",
     "must not be negative"),
    ("user uid string", '[[customizations.user]]\nname = "a"\nuid = "1000"', None, "customizations.user[0].uid",
     "expected an integer, got a string"),
    ("user home relative", '[[customizations.user]]\nname = "a"\nhome = "home/a"', None,
     "customizations.user[0].home", "absolute"),
    ("user group name", '[[customizations.user]]\nname = "a"\ngroups = ["wh eel"]', None,
     "customizations.user[0].groups[0]", "not a valid group name"),
    ("duplicate user", '[[customizations.user]]\nname = "a"\n[[customizations.user]]\nname = "a"', None,
     "customizations.user[1].name", "duplicate user name"),
    ("group name pattern", '[[customizations.group]]\nname = ".x"', None, "customizations.group[0].name",
     "not a valid group name"),
    ("duplicate group name", '[[customizations.group]]\nname = "g"\n[[customizations.group]]\nname = "g"', None,
     "customizations.group[1].name", "duplicate group name"),
    ("duplicate gid", '[[customizations.group]]\nname = "g"\ngid = 5\n[[customizations.group]]\nname = "h"\ngid = 5',
     None, "customizations.group[1].gid", "duplicate gid"),
    ("sshkey without key", '[[customizations.sshkey]]\nuser = "root"', None, "customizations.sshkey[0].key",
     "is required"),
    ("timezone invalid", '[customizations.timezone]\ntimezone = "../etc/passwd"', None,
     "customizations.timezone.timezone", "time zone"),
    ("firewall port syntax", '[customizations.firewall]\nports = ["6443/tcp"]', None,
     "customizations.firewall.ports[0]", "PORT[-PORT]:PROTO"),
    ("firewall port protocol", '[customizations.firewall]\nports = ["22:icmp"]', None,
     "customizations.firewall.ports[0]", "PORT[-PORT]:PROTO"),
    ("firewall port range order", '[customizations.firewall]\nports = ["200-100:tcp"]', None,
     "customizations.firewall.ports[0]", "ascending"),
    ("firewall port too big", '[customizations.firewall]\nports = ["70000:udp"]', None,
     "customizations.firewall.ports[0]", "1-65535"),
    ("firewall service both", '[customizations.firewall.services]\nenabled = ["ssh"]\ndisabled = ["ssh"]', None,
     "customizations.firewall.services", "both enabled and disabled"),
    ("firewall zone without name", '[[customizations.firewall.zones]]\nsources = ["10.0.0.0/8"]', None,
     "customizations.firewall.zones[0].name", "is required"),
    ("firewall zone source", '[[customizations.firewall.zones]]\nname = "trusted"\nsources = ["10.42.0.0/33"]',
     None, "customizations.firewall.zones[0].sources[0]", "network"),
    ("service enabled and masked", '[customizations.services]\nenabled = ["sshd"]\nmasked = ["sshd.service"]', None,
     "customizations.services", "both enabled and masked"),
    ("service name", '[customizations.services]\nenabled = ["bad unit"]', None,
     "customizations.services.enabled[0]", "systemd unit name"),
    ("directory relative", '[[customizations.directories]]\npath = "etc/x"', None,
     "customizations.directories[0].path", "absolute"),
    ("directory dotdot", '[[customizations.directories]]\npath = "/etc/../usr"', None,
     "customizations.directories[0].path", '".."'),
    ("directory not canonical", '[[customizations.directories]]\npath = "/etc//x"', None,
     "customizations.directories[0].path", "canonical"),
    ("directory trailing slash", '[[customizations.directories]]\npath = "/etc/x/"', None,
     "customizations.directories[0].path", 'end with "/"'),
    ("directory outside /etc", '[[customizations.directories]]\npath = "/usr/local/x"', None,
     "customizations.directories[0].path", "allowed under: /etc"),
    ("directory mode", '[[customizations.directories]]\npath = "/etc/x"\nmode = "0800"', None,
     "customizations.directories[0].mode", "octal mode"),
    ("directory mode as integer", '[[customizations.directories]]\npath = "/etc/x"\nmode = 755', None,
     "customizations.directories[0].mode", "expected a string, got an integer"),
    ("directory user pattern", '[[customizations.directories]]\npath = "/etc/x"\nuser = "-bad"', None,
     "customizations.directories[0].user", "not a valid user name"),
    ("directory user float", '[[customizations.directories]]\npath = "/etc/x"\nuser = 1.5', None,
     "customizations.directories[0].user", "expected a string or an integer"),
    ("file outside policy", '[[customizations.files]]\npath = "/usr/bin/x"\ndata = "x"', None,
     "customizations.files[0].path", "allowed under"),
    ("file /etc/shadow", '[[customizations.files]]\npath = "/etc/shadow"\ndata = "x"', None,
     "customizations.files[0].path", "must not be written"),
    ("file /etc/fstab", '[[customizations.files]]\npath = "/etc/fstab"\ndata = "x"', None,
     "customizations.files[0].path", "must not be written"),
    ("file data and uri", '[[customizations.files]]\npath = "/etc/x"\ndata = "x"\nuri = "x.txt"', None,
     "customizations.files[0]", '"data" or "uri"'),
    ("file uri missing", '[[customizations.files]]\npath = "/etc/x"\nuri = "nope.txt"', None,
     "customizations.files[0].uri", "does not name a readable file"),
    ("file mode", '[[customizations.files]]\npath = "/etc/x"\nmode = "rwx"', None,
     "customizations.files[0].mode", "octal mode"),
    ("file is parent of node", '[[customizations.files]]\npath = "/etc/a"\n[[customizations.directories]]\n'
     'path = "/etc/a/b"', None, "customizations.directories[0].path", "which is a file"),
    ("duplicate node", '[[customizations.files]]\npath = "/etc/a"\n[[customizations.files]]\npath = "/etc/a"', None,
     "customizations.files[1].path", "already created by customizations.files[0].path"),
    ("repository without id", '[[customizations.repositories]]\nbaseurls = ["http://x/"]', None,
     "customizations.repositories[0].id", "is required"),
    ("repository without source", '[[customizations.repositories]]\nid = "r"', None,
     "customizations.repositories[0]", "baseurls, mirrorlist or metalink"),
    ("repository bad url", '[[customizations.repositories]]\nid = "r"\nbaseurls = ["not a url"]', None,
     "customizations.repositories[0].baseurls[0]", "is not a URL"),
    ("repository gpgcheck without keys", '[[customizations.repositories]]\nid = "r"\nbaseurls = ["http://x/"]\n'
     'gpgcheck = true', None, "customizations.repositories[0].gpgkeys", "at least one GPG key"),
    ("repository bad gpg key", '[[customizations.repositories]]\nid = "r"\nbaseurls = ["http://x/"]\n'
     'gpgkeys = ["garbage"]', None, "customizations.repositories[0].gpgkeys[0]", "neither a URL"),
    ("repository filename", '[[customizations.repositories]]\nid = "r"\nbaseurls = ["http://x/"]\n'
     'filename = "a b"', None, "customizations.repositories[0].filename", "not a valid .repo"),
    ("filesystem on commit", '[[customizations.filesystem]]\nmountpoint = "/var/data"\nminsize = "1 GiB"', None,
     "customizations.filesystem", 'not supported by image type "edge-commit"'),
    ("filesystem bad size", '[[customizations.filesystem]]\nmountpoint = "/var/data"\nminsize = "lots"', "raw",
     "customizations.filesystem[0].minsize", "invalid size"),
    ("filesystem size and minsize", '[[customizations.filesystem]]\nmountpoint = "/var/d"\nminsize = 1\nsize = 1',
     "raw", "customizations.filesystem[0].minsize", "not both"),
    ("filesystem mountpoint /usr", '[[customizations.filesystem]]\nmountpoint = "/usr"\nminsize = 1', "raw",
     "customizations.filesystem[0].mountpoint", "cannot be a mount point"),
    ("filesystem mountpoint /var/home", '[[customizations.filesystem]]\nmountpoint = "/var/home/x"\nminsize = 1',
     "raw", "customizations.filesystem[0].mountpoint", "it is under /var/home"),
    ("filesystem mountpoint /boot/efi", '[[customizations.filesystem]]\nmountpoint = "/boot/efi"\nminsize = 1',
     "edge-raw-image", "customizations.filesystem[0].mountpoint", "cannot be a mount point"),
    ("filesystem mountpoint /etc/x", '[[customizations.filesystem]]\nmountpoint = "/etc/x"\nminsize = 1',
     "raw", "customizations.filesystem[0].mountpoint", "it is under /etc"),
    ("disk on edge-commit", '[customizations.disk]\nminsize = 1', None, "customizations.disk", "not supported"),
    ("kernel append on commit", '[customizations.kernel]\nappend = "quiet"', None, "customizations.kernel.append",
     "not supported by image type"),
    ("installer on commit", '[customizations.installer]\nunattended = true', None, "customizations.installer",
     "not supported"),
    ("services on edge-installer", '[customizations.services]\nenabled = ["a"]', "edge-installer",
     "customizations.services", 'not supported by image type "edge-installer"'),
    ("files on edge-raw-image", '[[customizations.files]]\npath = "/etc/a"', "edge-raw-image",
     "customizations.files", "not supported"),
    ("simplified installer needs device", '[[customizations.user]]\nname = "a"', "edge-simplified-installer",
     "customizations.installation_device", "is required"),
    ("installation device outside /dev", '[customizations]\ninstallation_device = "/tmp/x"',
     "edge-simplified-installer", "customizations.installation_device", "under /dev"),
    ("fdo without server", '[customizations]\ninstallation_device = "/dev/vda"\n[customizations.fdo]\n'
     'diun_pub_key_insecure = "true"', "edge-simplified-installer", "customizations.fdo.manufacturing_server_url",
     "is required"),
    ("fdo two diun keys", '[customizations]\ninstallation_device = "/dev/vda"\n[customizations.fdo]\n'
     'manufacturing_server_url = "http://fdo:8080"\ndiun_pub_key_insecure = "true"\ndiun_pub_key_hash = "sha256:x"',
     "edge-simplified-installer", "customizations.fdo", "exactly one"),
    ("ignition both", '[customizations.ignition.embedded]\nconfig = "e30="\n[customizations.ignition.firstboot]\n'
     'url = "http://x/"', "edge-raw-image", "customizations.ignition", "not both"),
    ("ignition firstboot no url", '[customizations.ignition.firstboot]\nempty = false', "edge-raw-image",
     "customizations.ignition.firstboot.url", "is required"),
    ("containers on raw image", '[[containers]]\nsource = "registry.example.com/a/b:1"', "edge-raw-image", "containers",
     "not supported"),
    ("installer kickstart with users", '[[customizations.user]]\nname = "a"\n[customizations.installer.kickstart]\n'
     'contents = "text"', "edge-installer", "customizations.installer.kickstart", "cannot be combined"),
    ("unknown image type", "", "edge-comit", "", 'did you mean "edge-commit"'),
    ("fieldshift channel", '[fieldshift]\nchannel = "Stable Channel"', None, "fieldshift.channel", "channel name"),
    ("fieldshift release_url", '[fieldshift]\nrelease_url = "ftp//x"', None, "fieldshift.release_url", "not a URL"),
    ("fieldshift trusted key missing", '[fieldshift]\ntrusted_keys = ["keys/catalog.pub"]', None,
     "fieldshift.trusted_keys[0]", "does not exist"),
    ("fieldshift install_agent type", '[fieldshift]\ninstall_agent = "yes"', None, "fieldshift.install_agent",
     "expected a boolean"),
    ("fieldshift greenboot attempts", '[fieldshift.greenboot]\nmax_boot_attempts = 0', None,
     "fieldshift.greenboot.max_boot_attempts", "between 1 and 100"),
    ("fieldshift agent table type", '[fieldshift]\nagent = "fast"', None, "fieldshift.agent", "expected a table"),
    ("fieldshift agent setting", '[fieldshift.agent]\nreboot_strategy = "whenever"', None,
     "fieldshift.agent.reboot_strategy", ""),
    ("fieldshift ref", '[fieldshift]\nref = "bad ref//x"', None, "fieldshift.ref", "ostree ref"),
    ("fieldshift microshift manifests", '[fieldshift.microshift]\nmanifests = ["missing"]', None,
     "fieldshift.microshift.manifests[0]", "not a directory"),
    ("internal field cannot be set", 'source_digest = "x"', None, "source_digest", "unknown key"),
    ("sshd is not taken by edge types", '[customizations.sshd]\npermit_root_login = "prohibit-password"', None,
     "customizations.sshd", "not supported"),
    ("firstboot is not taken by edge types", '[customizations.firstboot]\ntype = "custom"', "raw",
     "customizations.firstboot", "not supported"),
    ("customization at top level", 'hostname = "edge"', None, "hostname",
     "it belongs in [customizations] (customizations.hostname)"),
    ("fieldshift key at top level", 'release_url = "http://127.0.0.1/r"', None, "release_url",
     "it belongs in [fieldshift] (fieldshift.release_url)"),
    ("hostname too long", '[customizations]\nhostname = "' + "a" * 64 + '"', None, "customizations.hostname",
     "host name"),
    ("ntp server empty", '[customizations.timezone]\nntpservers = [""]', None, "customizations.timezone.ntpservers[0]",
     "host name"),
    ("locale with space", '[customizations.locale]\nlanguages = ["en US"]', None,
     "customizations.locale.languages[0]", "not a locale"),
    ("cacert not PEM", '[customizations.cacerts]\npem_certs = ["nope"]', None, "customizations.cacerts.pem_certs[0]",
     "PEM"),
    ("containers-storage relative", '[customizations.containers-storage]\ndestination-path = "var/x"', None,
     "customizations.containers-storage.destination-path", "absolute"),
    ("rpm import key relative", '[customizations.rpm.import_keys]\nfiles = ["key.asc"]', None,
     "customizations.rpm.import_keys.files[0]", "absolute"),
    ("openscap is refused on ostree images", '[customizations.openscap]\nprofile_id = "cis"', "raw",
     "customizations.openscap", "not supported"),
    ("partition type", '[[customizations.disk.partitions]]\ntype = "zfs"', "edge-commit", "customizations.disk",
     "not supported"),
    ("iso volume id", '[customizations.iso]\nvolume_id = "' + "V" * 33 + '"', "edge-installer",
     "customizations.iso.volume_id", "32 characters"),
    ("ignition url and empty", '[customizations.ignition.firstboot]\nurl = "http://x/"\nempty = true',
     "edge-raw-image", "customizations.ignition.firstboot", "exclude each other"),
    ("sudo-nopasswd with kickstart", '[customizations.installer]\nsudo-nopasswd = ["a"]\n'
     '[customizations.installer.kickstart]\ncontents = "x"', "edge-installer", "customizations.installer.sudo-nopasswd",
     "kickstart"),
    ("sudo-nopasswd wrong type", '[customizations.installer]\nsudo-nopasswd = "a"', "edge-installer",
     "customizations.installer.sudo-nopasswd", "expected an array"),
    ("enabled module empty name", '[[enabled_modules]]\nname = ""\nstream = "1"', None, "enabled_modules[0].name",
     "must not be empty"),
    ("group entry empty", '[[groups]]\nname = " "', None, "groups[0].name", "must not be empty"),
    ("container source whitespace", '[[containers]]\nsource = "a b"', None, "containers[0].source", "whitespace"),
    ("duplicate uid", '[[customizations.user]]\nname = "a"\nuid = 7\n[[customizations.user]]\nname = "b"\nuid = 7',
     None, "customizations.user[1].uid", "duplicate uid"),
    ("user key empty", '[[customizations.user]]\nname = "a"\nkey = " "', None, "customizations.user[0].key",
     "must not be empty"),
    ("sshkey user invalid", '[[customizations.sshkey]]\nuser = "a b"\nkey = "k"', None,
     "customizations.sshkey[0].user", "not a valid user name"),
    ("directory group negative", '[[customizations.directories]]\npath = "/etc/x"\ngroup = -5', None,
     "customizations.directories[0].group", "must not be negative"),
    ("logical volumes on plain partition", '[[customizations.disk.partitions]]\ntype = "plain"\n'
     '[[customizations.disk.partitions.logical_volumes]]\nname = "lv"', "edge-simplified-installer",
     "customizations.disk", "not supported"),
    ("fips wrong type", '[customizations]\nfips = "yes"', None, "customizations.fips", "expected a boolean"),
    ("repository priority", '[[customizations.repositories]]\nid = "r"\nbaseurls = ["http://x/"]\npriority = 0',
     None, "customizations.repositories[0].priority", "1 or more"),
    ("duplicate repository id", '[[customizations.repositories]]\nid = "r"\nbaseurls = ["http://x/"]\n'
     '[[customizations.repositories]]\nid = "r"\nbaseurls = ["http://y/"]', None,
     "customizations.repositories[1].id", "duplicate repository id"),
    ("greenboot healthcheck path", '[fieldshift.greenboot]\ndisabled_healthchecks = ["../x"]', None,
     "fieldshift.greenboot.disabled_healthchecks[0]", "file name"),
    ("greenboot grace period", '[fieldshift.greenboot]\nwatchdog_grace_period = -1', None,
     "fieldshift.greenboot.watchdog_grace_period", "must not be negative"),
    ("microshift config not a table", '[fieldshift.microshift]\nconfig = "dns"', None,
     "fieldshift.microshift.config", "expected a table"),
    ("size on a table key", '[customizations.disk]\nminsize = true', "raw", "customizations.disk.minsize",
     "expected an integer or a size string"),
    ("datetime for a string", 'description = 1979-05-27T07:32:00Z', None, "description",
     "expected a string, got a datetime"),
    ("control character in a key", '"bad\\nkey" = 1', None, '"bad\\nkey"', "unknown key"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "image_type", "path", "fragment"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_blueprint_error_names_the_key_path(
    load_text: LoadText, case: str, body: str, image_type: str | None, path: str, fragment: str
) -> None:
    text = body if body.startswith(("name", "# no name")) else HEAD + body
    with pytest.raises(BlueprintError) as info:
        load_text(text, image_type)
    message = info.value.message
    assert "\n" not in message
    if path:
        assert f" {path}:" in message, message
    assert fragment in message, message


def test_valid_blueprint_with_every_commit_customization_loads(load_text: LoadText) -> None:
    bp = load_text(
        HEAD
        + """
version = "2.1.0-rc.1+build.5"
distro = "rhel-94"
[[packages]]
name = "vim-enhanced"
version = "*"
[[modules]]
name = "tmux"
[[groups]]
name = "core"
[[enabled_modules]]
name = "nodejs"
stream = "18"
[[containers]]
source = "registry.example.com/fedora/fedora:latest"
tls-verify = true
[customizations]
hostname = "edge-01.example.com"
fips = false
[customizations.kernel]
name = "kernel-rt"
[[customizations.sshkey]]
user = "root"
key = "ssh-ed25519 AAAA root@x"
[[customizations.user]]
name = "admin"
description = "Administrator"
password = "hunter2"
key = "ssh-ed25519 AAAA admin@x"
home = "/var/home/admin/"
shell = "/usr/bin/bash"
groups = ["wheel"]
uid = 1000
gid = 1000
[[customizations.group]]
name = "widget"
gid = 1050
[customizations.timezone]
timezone = "Europe/Berlin"
ntpservers = ["0.pool.ntp.org"]
[customizations.locale]
languages = ["en_US.UTF-8"]
keyboard = "us"
[customizations.firewall]
ports = ["22:tcp", "imap:tcp", "30000-32767:udp"]
[customizations.firewall.services]
enabled = ["ssh"]
disabled = ["telnet"]
[[customizations.firewall.zones]]
name = "trusted"
sources = ["10.42.0.0/16", "169.254.169.1", "fd01::/48"]
[customizations.services]
enabled = ["sshd", "cockpit.socket"]
disabled = ["postfix"]
masked = ["grub-boot-success.timer"]
[[customizations.directories]]
path = "/etc/widget"
mode = "0750"
user = "root"
group = 0
ensure_parents = true
[[customizations.files]]
path = "/etc/widget/config"
data = "x=1\\n"
mode = "644"
[[customizations.files]]
path = "/usr/local/bin/widget"
mode = "0755"
[[customizations.repositories]]
id = "extra"
baseurls = ["https://example.com/repo/"]
gpgcheck = true
gpgkeys = ["https://example.com/key.asc"]
[customizations.rpm.import_keys]
files = ["/etc/pki/rpm-gpg/RPM-GPG-KEY-extra"]
[customizations.cacerts]
pem_certs = ["-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"]
[customizations.containers-storage]
destination-path = "/usr/share/containers/storage"
[fieldshift]
channel = "beta"
release_url = "http://127.0.0.1:8080/r"
[fieldshift.greenboot]
max_boot_attempts = 2
"""
    )
    c = bp.customizations
    assert bp.distro == "rhel-9" and bp.version == "2.1.0-rc.1+build.5"
    assert bp.package_specs == ("vim-enhanced", "tmux", "@core")
    assert bp.containers[0].tls_verify is True
    assert c.users[0].name == "root" and c.users[0].key == "ssh-ed25519 AAAA root@x"
    assert c.user[0].password is not None and c.user[0].password.startswith("$6$")
    assert c.user[0].home == "/var/home/admin"
    assert c.directories[0].group == 0 and c.files[0].mode == "644"
    assert c.containers_storage is not None
    assert c.containers_storage.destination_path == "/usr/share/containers/storage"
    assert bp.fieldshift.channel == "beta" and bp.fieldshift.greenboot.max_boot_attempts == 2


def test_defaults_fill_a_minimal_blueprint(load_text: LoadText) -> None:
    bp = load_text(HEAD)
    assert (bp.version, bp.distro, bp.architecture, bp.image_type) == ("0.0.0", "rhel-9", "x86_64", "edge-commit")
    assert bp.fieldshift.channel == "stable" and bp.fieldshift.install_agent is True
    assert bp.customizations.firewall.ports == () and bp.customizations.present == frozenset()


@pytest.mark.parametrize("mountpoint", ["/", "/boot", "/var", "/var/log", "/var/lib/microshift", "/data", "/tmp"])
def test_mount_points_osbuild_allows_on_ostree_are_accepted(load_text: LoadText, mountpoint: str) -> None:
    body = f'[[customizations.filesystem]]\nmountpoint = "{mountpoint}"\nminsize = "1 GiB"\n'
    assert load_text(HEAD + body, "edge-raw-image").customizations.filesystem[0].mountpoint == mountpoint


def test_size_strings_are_converted_to_bytes(load_text: LoadText) -> None:
    bp = load_text(HEAD + '[[customizations.filesystem]]\nmountpoint = "/var/data"\nminsize = "2 GiB"\n'
                   '[[customizations.filesystem]]\nmountpoint = "/"\nsize = 1000', "raw")  # fmt: skip
    assert [f.minsize for f in bp.customizations.filesystem] == [2 * 1024**3, 1000]


def test_disk_images_take_kernel_arguments_and_files(load_text: LoadText) -> None:
    body = HEAD + '[customizations.kernel]\nappend = "console=ttyS0"\n[[customizations.files]]\npath = "/etc/a"\n'
    for kind in ("raw", "qcow2"):
        assert kernel_of(load_text(body, kind)).append == "console=ttyS0"
    assert load_text(HEAD + '[customizations.kernel]\nappend = "quiet"', "edge-raw-image").image_type == (
        "edge-raw-image"
    )


def test_osbuild_image_type_aliases_are_accepted(load_text: LoadText) -> None:
    assert load_text(HEAD, "rhel-edge-commit").image_type == "edge-commit"


def test_file_uri_is_resolved_next_to_the_blueprint(load_text: LoadText, tmp_path: Path) -> None:
    (tmp_path / "payload.txt").write_text("hi\n")
    bp = load_text(HEAD + '[[customizations.files]]\npath = "/etc/payload"\nuri = "payload.txt"\n')
    assert bp.customizations.files[0].uri == "payload.txt"


def test_trusted_keys_resolve_relative_to_the_blueprint(load_text: LoadText, tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "catalog.pub").write_text("-----BEGIN PUBLIC KEY-----\n")
    bp = load_text(HEAD + '[fieldshift]\ntrusted_keys = ["keys/catalog.pub"]\n')
    assert bp.fieldshift.trusted_keys == ((tmp_path / "keys" / "catalog.pub").resolve(),)


def test_empty_password_is_dropped_and_hashes_are_kept(load_text: LoadText) -> None:
    hashed = "$6$abc$" + "x" * 86
    bp = load_text(HEAD + f'[[customizations.user]]\nname = "a"\npassword = ""\n'
                   f'[[customizations.user]]\nname = "b"\npassword = "{hashed}"\n')  # fmt: skip
    assert [u.password for u in bp.customizations.user] == [None, hashed]


def test_reproducible_mode_gives_identical_password_hashes(
    load_text: LoadText, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = HEAD + '[[customizations.user]]\nname = "a"\npassword = "pw"\n'
    random_a, random_b = load_text(body), load_text(body)
    assert random_a.customizations.user[0].password != random_b.customizations.user[0].password
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first, second = load_text(body), load_text(body)
    assert first.customizations.user[0].password == second.customizations.user[0].password
    other_user = load_text(body.replace('name = "a"', 'name = "b"'))
    assert other_user.customizations.user[0].password != first.customizations.user[0].password
    assert load_text(body, reproducible=False).customizations.user[0].password != first.customizations.user[0].password


def test_source_digest_is_the_sha256_of_the_rendered_text(load_text: LoadText) -> None:
    import hashlib

    assert load_text(HEAD).source_digest == hashlib.sha256(HEAD.encode()).hexdigest()


def test_kernel_without_a_name_is_the_distros_kernel(load_text: LoadText) -> None:
    body = '[customizations.kernel]\nappend = "console=ttyS0"\n'
    assert kernel_of(load_text(HEAD + 'distro = "debian-12"\n' + body, "raw")).name == "linux-image-amd64"
    assert kernel_of(load_text(HEAD + body, "raw")).name == "kernel"
    named = HEAD + '[customizations.kernel]\nname = "kernel-rt"\n'
    assert kernel_of(load_text(named)).name == "kernel-rt"


def test_single_brackets_for_an_array_of_tables_get_a_hint(load_text: LoadText) -> None:
    with pytest.raises(BlueprintError, match=r"write \[\[customizations\.files\]\]"):
        load_text(HEAD + '[customizations.files]\npath = "/etc/a"\n')
    with pytest.raises(BlueprintError, match=r"write \[customizations\.firewall\] \(one table\)"):
        load_text(HEAD + "[[customizations.firewall]]\n")


# No image type takes [customizations.disk] or partitioning_mode (osbuild's edge types refuse them
# too), so their content rules are checked on the parsed model directly.
DISK_RULES = [
    ('[[customizations.disk.partitions]]\ntype = "zfs"', "customizations.disk.partitions[0].type",
     "unknown partition type"),
    ('[customizations]\npartitioning_mode = "zfs"', "customizations.partitioning_mode", "unknown mode"),
    ('[[customizations.filesystem]]\nmountpoint = "/var/a"\nminsize = 1\n[customizations.disk]\nminsize = 1',
     "customizations.disk", "cannot be combined"),
    ('[[customizations.disk.partitions]]\ntype = "plain"\n[[customizations.disk.partitions.logical_volumes]]\n'
     'name = "lv"', "customizations.disk.partitions[0].logical_volumes", 'only a partition of type "lvm"'),
    ('[[customizations.disk.partitions]]\ntype = "btrfs"\n[[customizations.disk.partitions.subvolumes]]\n'
     'name = "root"\nmountpoint = "/usr"', "customizations.disk.partitions[0].subvolumes[0].mountpoint",
     "cannot be a mount point"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "path", "fragment"), DISK_RULES)
def test_disk_layout_rules_name_the_key_path(tmp_path: Path, body: str, path: str, fragment: str) -> None:
    source = tmp_path / "bp.toml"
    converter = Converter(Context(source=str(source), base_dir=tmp_path))
    bp = converter.model(Blueprint, tomllib.loads(HEAD + body), "")
    with pytest.raises(BlueprintError) as info:
        rules.check(bp, converter)
    assert f" {path}:" in info.value.message and fragment in info.value.message


def test_a_valid_disk_layout_passes_the_rules(tmp_path: Path) -> None:
    converter = Converter(Context(source="bp.toml", base_dir=tmp_path))
    body = ('[[customizations.disk.partitions]]\ntype = "lvm"\nname = "vg"\nminsize = "10 GiB"\n'
            '[[customizations.disk.partitions.logical_volumes]]\nname = "varlv"\nmountpoint = "/var/log"\n'
            'fs_type = "xfs"\nminsize = "1 GiB"\n')  # fmt: skip
    rules.check(converter.model(Blueprint, tomllib.loads(HEAD + body), ""), converter)
