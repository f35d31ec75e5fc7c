"""The signed release catalog: its format, signing, and the trust rules a device applies to it.

This module is the single definition of what a device trusts. The builder writes catalogs through
:func:`sign`; the device accepts them only through :func:`verify`, which applies the trust rules as
one readable sequence (modelled on python-tuf's ``tuf/ngclient/_internal/trusted_metadata_set.py``):

1. size limit, before anything is parsed (no memory blow-up from a hostile server);
2. a detached Ed25519 signature by one of the trusted keys over the exact bytes (no tampering);
3. parse and schema check (no ambiguous or malformed data reaches the agent);
4. the serial is not lower than the last accepted one (no replay of an old catalog);
5. the catalog has not expired (no freeze on an old catalog).

After that a consumer pulls a release's commit *by checksum* (:func:`check_commit`), which binds the
content to the signed catalog, and never moves to an older version unless the channel says
``allow_downgrade`` (:func:`check_downgrade`, :func:`plan_update`). Each violation has its own
exception class; all derive from :class:`CatalogError`.

Wire format (``catalog.json``, UTF-8 JSON; see docs/releases.md)::

    {"schema": "fieldshift.catalog/1", "serial": 7,
     "issued": "2026-11-25T12:00:00Z", "expires": "2026-12-25T12:00:00Z",
     "channels": {"stable": {"allow_downgrade": false, "releases": [
        {"version": "1.2", "ref": "fieldshift/x86_64/edge", "commit": "<sha256>",
         "published": "...", "barrier": false, "withdrawn": false,
         "rollout": {"start": "...", "hours": 24} | null,
         "deltas": [{"from": "<sha256>" | null, "size": 12345}]}]}}}

``catalog.json.sig`` is text: one base64 line per signature (each the raw 64-byte Ed25519
signature over the exact bytes of ``catalog.json``). The first line signs the current catalog;
further lines may sign it with other keys (key rotation) or sign the previous catalog, which lets a
publisher swap the two files without a window in which a reader sees a mismatched pair.

Runs on Python 3.9 (device code).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence, Union

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
# cryptography is imported where a key is loaded or a signature checked, not with this module: the
# device's `status` and the reading of a cached catalog do not pay for it (a second of CPU on a slow core).

from greenboot.errors import UserError

SCHEMA = "fieldshift.catalog/1"
CATALOG_NAME = "catalog.json"
SIGNATURE_NAME = "catalog.json.sig"
#: Largest catalog a device will even look at (checked before parsing).
MAX_CATALOG_BYTES = 1024 * 1024
#: Largest signature file a device will read (a few dozen signature lines).
MAX_SIGNATURE_BYTES = 8 * 1024

_COMMIT_RE = re.compile(r"^[0-9a-f]{64}$")
_CHANNEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~:-]{0,127}$")
_REF_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,6})?Z$")

TrustedKey = Union[str, "os.PathLike[str]", bytes, "Ed25519PublicKey"]


# --------------------------------------------------------------------------------------------
# Errors: one class per violated rule.


class CatalogError(UserError):
    """Base of every catalog problem; the message says which rule was violated and where."""


class CatalogTooLarge(CatalogError):
    """The catalog or its signature is larger than a device accepts (checked before parsing)."""


class CatalogSignatureInvalid(CatalogError):
    """No trusted key signed these exact catalog bytes (tampered, truncated, wrong key, bad .sig)."""


class CatalogMalformed(CatalogError):
    """The signed catalog does not parse or does not match the schema."""


class CatalogReplayed(CatalogError):
    """The catalog's serial is lower than the last accepted one (an old catalog replayed)."""


class CatalogExpired(CatalogError):
    """The catalog's expiry time has passed (a frozen, no longer refreshed catalog)."""


class DowngradeRefused(CatalogError):
    """Moving to an older version than the running one, on a channel that does not allow it."""


class CommitMismatch(CatalogError):
    """The content obtained for a release is not the commit the signed catalog names."""


class UnknownChannel(CatalogError):
    """The catalog has no channel of that name."""


class UnknownRelease(CatalogError):
    """The channel has no release with that version or commit."""


class SigningKeyError(CatalogError):
    """The private signing key is missing, readable by others, or not an Ed25519 PEM key."""


class TrustedKeyError(CatalogError):
    """A trusted public key cannot be loaded, or no trusted key was given."""


# --------------------------------------------------------------------------------------------
# Values.


def parse_time(text: str, where: str = "time") -> datetime:
    """Parse ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` into an aware UTC datetime (CatalogMalformed if not)."""
    if not isinstance(text, str) or not _TIME_RE.match(text):
        raise CatalogMalformed(f"catalog {where} must be a UTC time like 2026-01-31T12:00:00Z, got {text!r}")
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
    except ValueError as err:
        raise CatalogMalformed(f"catalog {where} is not a valid time: {text!r}") from err


def format_time(moment: datetime) -> str:
    """Format an aware datetime as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds)."""
    if moment.tzinfo is None:
        raise ValueError("catalog times must be timezone-aware")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def version_key(version: str) -> tuple:
    """Sort key for release versions: digit runs compare as numbers, letter runs as text.

    Separators are ignored and a numeric segment is newer than a letter segment, as in rpm's
    ``rpmvercmp`` (rpm/rpmio/rpmvercmp.c): ``1.10 > 1.9``, ``1.0 < 1.0.1``, ``1.0a < 1.0.1``.
    """
    return tuple((1, int(seg)) if seg.isdigit() else (0, seg) for seg in re.findall(r"\d+|[A-Za-z]+", version))


def is_newer(version: str, than: str) -> bool:
    """True when ``version`` sorts after ``than`` by :func:`version_key`."""
    return version_key(version) > version_key(than)


def rollout_bucket(device_id: str) -> float:
    """A device's stable place in [0, 1) for phased rollouts (sha256 of its id)."""
    digest = hashlib.sha256(device_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / float(1 << 64)


@dataclass(frozen=True)
class Delta:
    """A static delta published for a release: from a commit (``None`` = from scratch), its size."""

    from_commit: str | None
    size: int


@dataclass(frozen=True)
class Rollout:
    """Phased rollout: the share of devices offered a release grows linearly over ``hours``."""

    start: datetime
    hours: float

    def fraction(self, now: datetime) -> float:
        """Share of the fleet (0..1) offered the release at ``now``."""
        if now < self.start:
            return 0.0
        if self.hours <= 0:
            return 1.0
        elapsed = (now - self.start).total_seconds() / 3600.0
        return min(1.0, elapsed / self.hours)

    def admits(self, bucket: float, now: datetime) -> bool:
        """True when a device in ``bucket`` (see :func:`rollout_bucket`) is offered it at ``now``."""
        share = self.fraction(now)
        return share >= 1.0 or bucket < share


@dataclass(frozen=True)
class Release:
    """One release of a channel; content is the ostree ``commit`` (pulled by checksum)."""

    version: str
    ref: str
    commit: str
    published: datetime
    deltas: tuple[Delta, ...] = ()
    barrier: bool = False
    rollout: Rollout | None = None
    withdrawn: bool = False

    def delta_from(self, commit: str | None) -> Delta | None:
        """The published delta from ``commit`` (``None`` = the from-scratch delta), if any."""
        for delta in self.deltas:
            if delta.from_commit == commit:
                return delta
        return None

    def offered(self, bucket: float, now: datetime) -> bool:
        """True when a device in ``bucket`` may take this release at ``now``."""
        if self.withdrawn:
            return False
        return self.rollout is None or self.rollout.admits(bucket, now)


@dataclass(frozen=True)
class Channel:
    """An update channel: releases in publish order (versions strictly increasing)."""

    name: str
    releases: tuple[Release, ...] = ()
    allow_downgrade: bool = False

    def newest(self, *, include_withdrawn: bool = False) -> Release | None:
        """The last published release (skipping withdrawn ones unless asked)."""
        for release in reversed(self.releases):
            if include_withdrawn or not release.withdrawn:
                return release
        return None

    def find(self, *, version: str | None = None, commit: str | None = None) -> Release | None:
        """The release with that version or commit checksum, or None."""
        for release in self.releases:
            if version is not None and version_key(release.version) == version_key(version):
                return release
            if commit is not None and release.commit == commit:
                return release
        return None

    def release(self, version: str) -> Release:
        """The release with ``version``, or :class:`UnknownRelease`."""
        found = self.find(version=version)
        if found is None:
            known = ", ".join(r.version for r in self.releases) or "none"
            raise UnknownRelease(f"channel {self.name!r} has no release {version!r} (releases: {known})")
        return found


@dataclass(frozen=True)
class Catalog:
    """A whole catalog: serial, validity window and channels (sorted by name)."""

    serial: int
    issued: datetime
    expires: datetime
    channels: tuple[Channel, ...] = field(default_factory=tuple)

    def channel(self, name: str) -> Channel:
        """The channel called ``name``, or :class:`UnknownChannel`."""
        for chan in self.channels:
            if chan.name == name:
                return chan
        known = ", ".join(c.name for c in self.channels) or "none"
        raise UnknownChannel(f"the release catalog has no channel {name!r} (channels: {known})")

    def has_channel(self, name: str) -> bool:
        return any(chan.name == name for chan in self.channels)

    def with_channel(self, channel: Channel) -> Catalog:
        """A copy with ``channel`` added or replaced (same serial; bump it with :func:`next_catalog`)."""
        others = [c for c in self.channels if c.name != channel.name]
        chans = tuple(sorted([*others, channel], key=lambda c: c.name))
        return Catalog(self.serial, self.issued, self.expires, chans)

    def to_json(self) -> dict[str, Any]:
        """The wire form as plain JSON-able data."""
        return {
            "schema": SCHEMA,
            "serial": self.serial,
            "issued": format_time(self.issued),
            "expires": format_time(self.expires),
            "channels": {c.name: _channel_to_json(c) for c in self.channels},
        }

    def to_bytes(self) -> bytes:
        """Canonical bytes (sorted keys, 2-space indent, ASCII, trailing newline): what gets signed."""
        return (json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def next_catalog(previous: Catalog | None, *, now: datetime, valid_for: timedelta) -> Catalog:
    """An empty-change successor of ``previous``: serial + 1, issued ``now``, new expiry."""
    if previous is None:
        return Catalog(serial=1, issued=now, expires=now + valid_for, channels=())
    return Catalog(serial=previous.serial + 1, issued=now, expires=now + valid_for, channels=previous.channels)


def _channel_to_json(chan: Channel) -> dict[str, Any]:
    return {"allow_downgrade": chan.allow_downgrade, "releases": [_release_to_json(r) for r in chan.releases]}


def _release_to_json(rel: Release) -> dict[str, Any]:
    return {
        "version": rel.version,
        "ref": rel.ref,
        "commit": rel.commit,
        "published": format_time(rel.published),
        "barrier": rel.barrier,
        "withdrawn": rel.withdrawn,
        "rollout": None
        if rel.rollout is None
        else {"start": format_time(rel.rollout.start), "hours": rel.rollout.hours},
        "deltas": [{"from": d.from_commit, "size": d.size} for d in rel.deltas],
    }


# --------------------------------------------------------------------------------------------
# Parsing and schema (rule 3).


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise CatalogMalformed(f"catalog has the key {key!r} twice in one object")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise CatalogMalformed(f"catalog contains the non-JSON number {name}")


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise CatalogMalformed(f"catalog {where} is missing {key!r}")
    value = obj[key]
    # bool is an int in Python; never accept it where a number is meant.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise CatalogMalformed(f"catalog {where}.{key} has the wrong type (bool)")
    if not isinstance(value, kind):
        raise CatalogMalformed(f"catalog {where}.{key} has the wrong type ({type(value).__name__})")
    return value


def parse(data: bytes) -> Catalog:
    """Parse and schema-check catalog bytes *without* any trust decision (use :func:`verify`)."""
    try:
        text = data.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except CatalogMalformed:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CatalogMalformed(f"catalog is not valid JSON: {err}") from err
    if not isinstance(obj, dict):
        raise CatalogMalformed("catalog must be a JSON object")
    return _catalog_from_json(obj)


def _catalog_from_json(obj: dict[str, Any]) -> Catalog:
    schema = _get(obj, "schema", str, "top level")
    if schema != SCHEMA:
        raise CatalogMalformed(f"catalog schema is {schema!r}; this device understands {SCHEMA!r}")
    serial = _get(obj, "serial", int, "top level")
    if serial < 1:
        raise CatalogMalformed(f"catalog serial must be a positive integer, got {serial}")
    issued = parse_time(_get(obj, "issued", str, "top level"), "issued")
    expires = parse_time(_get(obj, "expires", str, "top level"), "expires")
    if expires <= issued:
        raise CatalogMalformed("catalog expires before it was issued")
    raw_channels = _get(obj, "channels", dict, "top level")
    channels = []
    for name in sorted(raw_channels):
        if not _CHANNEL_RE.match(name):
            raise CatalogMalformed(f"catalog channel name {name!r} is not allowed (letters, digits, . _ -)")
        channels.append(_channel_from_json(name, raw_channels[name]))
    return Catalog(serial=serial, issued=issued, expires=expires, channels=tuple(channels))


def _channel_from_json(name: str, obj: Any) -> Channel:
    where = f"channels.{name}"
    if not isinstance(obj, dict):
        raise CatalogMalformed(f"catalog {where} must be an object")
    allow = _get(obj, "allow_downgrade", bool, where)
    raw = _get(obj, "releases", list, where)
    releases = [_release_from_json(item, f"{where}.releases[{i}]") for i, item in enumerate(raw)]
    for before, after in zip(releases, releases[1:]):
        if not is_newer(after.version, before.version):
            raise CatalogMalformed(
                f"catalog {where}: release {after.version!r} is listed after {before.version!r} but is not newer"
            )
    return Channel(name=name, releases=tuple(releases), allow_downgrade=allow)


def _release_from_json(obj: Any, where: str) -> Release:
    if not isinstance(obj, dict):
        raise CatalogMalformed(f"catalog {where} must be an object")
    version = _get(obj, "version", str, where)
    if not _VERSION_RE.match(version):
        raise CatalogMalformed(f"catalog {where}.version {version!r} is not a valid version")
    ref = _get(obj, "ref", str, where)
    if not _REF_RE.match(ref):
        raise CatalogMalformed(f"catalog {where}.ref {ref!r} is not a valid ostree ref")
    commit = _get(obj, "commit", str, where)
    if not _COMMIT_RE.match(commit):
        raise CatalogMalformed(f"catalog {where}.commit must be a 64-character sha256 checksum")
    published = parse_time(_get(obj, "published", str, where), f"{where}.published")
    barrier = _get(obj, "barrier", bool, where)
    withdrawn = _get(obj, "withdrawn", bool, where)
    rollout = None
    raw_rollout = obj.get("rollout")
    if raw_rollout is not None:
        if not isinstance(raw_rollout, dict):
            raise CatalogMalformed(f"catalog {where}.rollout must be an object or null")
        start = parse_time(_get(raw_rollout, "start", str, f"{where}.rollout"), f"{where}.rollout.start")
        hours = _get(raw_rollout, "hours", (int, float), f"{where}.rollout")
        if hours < 0:
            raise CatalogMalformed(f"catalog {where}.rollout.hours must not be negative")
        rollout = Rollout(start=start, hours=float(hours))
    deltas = []
    for i, raw_delta in enumerate(_get(obj, "deltas", list, where)):
        dwhere = f"{where}.deltas[{i}]"
        if not isinstance(raw_delta, dict):
            raise CatalogMalformed(f"catalog {dwhere} must be an object")
        if "from" not in raw_delta:
            raise CatalogMalformed(f"catalog {dwhere} is missing 'from'")
        src = raw_delta["from"]
        if src is not None and (not isinstance(src, str) or not _COMMIT_RE.match(src)):
            raise CatalogMalformed(f"catalog {dwhere}.from must be a sha256 checksum or null")
        size = _get(raw_delta, "size", int, dwhere)
        if size < 0:
            raise CatalogMalformed(f"catalog {dwhere}.size must not be negative")
        deltas.append(Delta(from_commit=src, size=size))
    return Release(
        version=version,
        ref=ref,
        commit=commit,
        published=published,
        deltas=tuple(deltas),
        barrier=barrier,
        rollout=rollout,
        withdrawn=withdrawn,
    )


# --------------------------------------------------------------------------------------------
# Keys and signatures.


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load a PEM PKCS8 Ed25519 private key that only its owner can read (SigningKeyError if not)."""
    key_path = Path(path)
    try:
        info = key_path.stat()
    except FileNotFoundError as err:
        raise SigningKeyError(
            f"signing key {key_path} does not exist; make one with `fieldshift keys generate --out DIR`"
        ) from err
    except OSError as err:
        raise SigningKeyError(f"cannot read signing key {key_path}: {err.strerror}") from err
    if not stat.S_ISREG(info.st_mode):
        raise SigningKeyError(f"signing key {key_path} is not a regular file")
    if info.st_mode & 0o077:
        raise SigningKeyError(
            f"signing key {key_path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run `chmod 600 {key_path}`"
        )
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as err:
        raise SigningKeyError(f"signing key {key_path} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"signing key {key_path} is not an Ed25519 key")
    return key


def load_public_key(key: TrustedKey) -> Ed25519PublicKey:
    """A trusted key given as an Ed25519PublicKey, PEM bytes, or a path to a PEM file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, bytes):
        pem, where = key, "trusted key"
    else:
        where = f"trusted key {os.fspath(key)}"
        try:
            pem = Path(key).read_bytes()
        except OSError as err:
            raise TrustedKeyError(f"cannot read {where}: {err.strerror}") from err
    try:
        loaded = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as err:
        raise TrustedKeyError(f"{where} is not a PEM public key") from err
    if not isinstance(loaded, Ed25519PublicKey):
        raise TrustedKeyError(f"{where} is not an Ed25519 public key")
    return loaded


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """PEM SubjectPublicKeyInfo bytes of ``key`` (the ``catalog.pub`` format)."""
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PublicKey) -> str:
    """Short fingerprint of a public key: the first 16 hex digits of sha256 of its raw bytes."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signature_line(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """One signature line (base64 of the raw 64-byte signature, newline-terminated) over ``data``."""
    return base64.b64encode(key.sign(data)) + b"\n"


def sign(catalog: Catalog, private_key_path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """Serialize ``catalog`` and sign it: returns ``(catalog_bytes, signature_file_bytes)``."""
    data = catalog.to_bytes()
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogTooLarge(
            f"catalog would be {len(data)} bytes, over the {MAX_CATALOG_BYTES}-byte limit devices accept; "
            "drop old releases from the channel"
        )
    return data, signature_line(data, load_private_key(private_key_path))


def _signature_candidates(signature: bytes) -> list[bytes]:
    found = []
    for line in signature.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            raw = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 64:
            found.append(raw)
    return found


def _signed_by_trusted_key(data: bytes, signature: bytes, keys: Sequence[Ed25519PublicKey]) -> bool:
    from cryptography.exceptions import InvalidSignature

    for raw in _signature_candidates(signature):
        for key in keys:
            try:
                key.verify(raw, data)
            except InvalidSignature:
                continue
            return True
    return False


# --------------------------------------------------------------------------------------------
# The trust rules, in order.


def verify(
    data: bytes,
    signature: bytes,
    trusted_keys: Iterable[TrustedKey],
    *,
    last_serial: int | None,
    now: datetime,
) -> Catalog:
    """Accept catalog ``data`` only if it passes every trust rule; return the parsed catalog.

    ``last_serial`` is the serial of the last catalog this device accepted (None on first contact);
    ``now`` is the device's current time (aware). Raises the :class:`CatalogError` subclass naming
    the first rule violated.
    """
    if now.tzinfo is None:
        raise ValueError("verify() needs a timezone-aware 'now'")
    keys = [load_public_key(k) for k in trusted_keys]
    if not keys:
        raise TrustedKeyError("no trusted catalog keys are configured; ship at least one catalog.pub")

    # 1. Size, before parsing anything.
    if len(data) > MAX_CATALOG_BYTES:
        raise CatalogTooLarge(f"catalog is {len(data)} bytes, over the {MAX_CATALOG_BYTES}-byte limit")
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise CatalogTooLarge(f"catalog signature is {len(signature)} bytes, over the {MAX_SIGNATURE_BYTES}-byte limit")

    # 2. Signature by a trusted key over these exact bytes.
    if not _signed_by_trusted_key(data, signature, keys):
        ids = ", ".join(key_id(k) for k in keys)
        raise CatalogSignatureInvalid(
            f"catalog signature does not verify with any trusted key ({ids}); "
            "the catalog was altered, truncated, or signed with a key this device does not trust"
        )

    # 3. Parse and schema check.
    catalog = parse(data)

    # 4. No replay: serial not lower than the last accepted one.
    if last_serial is not None and catalog.serial < last_serial:
        raise CatalogReplayed(
            f"catalog serial {catalog.serial} is lower than the last accepted serial {last_serial}; "
            "an old catalog is being replayed"
        )

    # 5. No freeze: not expired.
    if catalog.expires <= now:
        raise CatalogExpired(
            f"catalog serial {catalog.serial} expired at {format_time(catalog.expires)} "
            f"(now {format_time(now)}); the publisher must re-sign it"
        )
    return catalog


def check_commit(release: Release, checksum: str) -> None:
    """Raise :class:`CommitMismatch` unless ``checksum`` is exactly the release's signed commit."""
    if checksum != release.commit:
        raise CommitMismatch(
            f"release {release.version} names commit {release.commit[:12]}… but the content is {checksum[:12]}…; "
            "refusing it"
        )


def check_downgrade(channel: Channel, current_version: str | None, target: Release) -> None:
    """Raise :class:`DowngradeRefused` if ``target`` is older than the running version.

    A downgrade is allowed only when the catalog sets ``allow_downgrade`` for the channel.
    """
    if current_version is None or channel.allow_downgrade:
        return
    if is_newer(current_version, target.version):
        raise DowngradeRefused(
            f"release {target.version} is older than the running {current_version} and channel "
            f"{channel.name!r} does not allow downgrades"
        )


def plan_update(
    catalog: Catalog,
    channel_name: str,
    current_version: str | None,
    *,
    now: datetime,
    bucket: float,
) -> Release | None:
    """The release a device running ``current_version`` should move to now, or None.

    Withdrawn releases and releases whose phased rollout does not yet include ``bucket`` are
    skipped. A barrier release newer than the running one must be passed through: the device goes
    to the oldest such barrier first (and waits if it is not yet offered to it). Without a newer
    release, a channel with ``allow_downgrade`` moves a device off a withdrawn or unlisted version to
    the newest offered release; otherwise nothing happens.
    """
    channel = catalog.channel(channel_name)
    newer = [r for r in channel.releases if current_version is None or is_newer(r.version, current_version)]
    for release in newer:
        if release.barrier and not release.withdrawn:
            return release if release.offered(bucket, now) else None
    offered = [r for r in newer if r.offered(bucket, now)]
    if offered:
        return offered[-1]
    if channel.allow_downgrade and current_version is not None:
        running = channel.find(version=current_version)
        if running is None or running.withdrawn:
            candidates = [r for r in channel.releases if r.offered(bucket, now)]
            if candidates:
                return candidates[-1]
    return None
