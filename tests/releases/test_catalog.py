"""The catalog trust rules: each attack on the catalog is refused with its own exception."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from builder import keys
from updater import catalog as cat

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=timezone.utc)
C1, C2, C3 = ("1" * 64), ("2" * 64), ("3" * 64)


def _release(version: str, commit: str, **kw) -> cat.Release:
    return cat.Release(version=version, ref="fieldshift/x86_64/edge", commit=commit, published=NOW, **kw)


def _catalog(serial: int = 5, *, expires: datetime = NOW + timedelta(days=7), **chan_kw) -> cat.Catalog:
    chan = cat.Channel(
        name="stable",
        releases=(
            _release("1.0", C1, deltas=(cat.Delta(None, 100),)),
            _release("1.1", C2, deltas=(cat.Delta(C1, 10), cat.Delta(None, 110))),
        ),
        **chan_kw,
    )
    return cat.Catalog(serial=serial, issued=NOW - timedelta(hours=1), expires=expires, channels=(chan,))


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> keys.KeyPair:
    return keys.generate(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> keys.KeyPair:
    return keys.generate(tmp_path_factory.mktemp("other-keys"))


def _verify(data: bytes, sig: bytes, trusted: list, last_serial: int | None = None, now: datetime = NOW) -> cat.Catalog:
    return cat.verify(data, sig, trusted, last_serial=last_serial, now=now)


def test_signed_catalog_round_trips_through_verify(keypair: keys.KeyPair) -> None:
    original = _catalog()
    data, sig = cat.sign(original, keypair.private_key)
    accepted = _verify(data, sig, [keypair.public_key], last_serial=4)
    assert accepted == original
    assert accepted.channel("stable").newest().commit == C2
    assert accepted.channel("stable").release("1.1").delta_from(C1) == cat.Delta(C1, 10)


def test_signature_file_is_one_base64_line_of_a_raw_64_byte_signature(keypair: keys.KeyPair) -> None:
    _, sig = cat.sign(_catalog(), keypair.private_key)
    lines = sig.decode("ascii").splitlines()
    assert len(lines) == 1
    assert len(base64.b64decode(lines[0], validate=True)) == 64


def test_tampered_catalog_is_refused(keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(), keypair.private_key)
    tampered = data.replace(C2.encode(), ("f" * 64).encode())
    assert tampered != data
    with pytest.raises(cat.CatalogSignatureInvalid):
        _verify(tampered, sig, [keypair.public_key])


def test_catalog_signed_with_an_untrusted_key_is_refused(keypair: keys.KeyPair, other_keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(), other_keypair.private_key)
    with pytest.raises(cat.CatalogSignatureInvalid):
        _verify(data, sig, [keypair.public_key])


def test_any_of_several_trusted_keys_is_accepted_for_rotation(
    keypair: keys.KeyPair, other_keypair: keys.KeyPair
) -> None:
    data, sig = cat.sign(_catalog(), other_keypair.private_key)
    assert _verify(data, sig, [keypair.public_key, other_keypair.public_key]).serial == 5


def test_signature_lines_for_several_keys_verify_with_either_key(
    keypair: keys.KeyPair, other_keypair: keys.KeyPair
) -> None:
    data, sig_old = cat.sign(_catalog(), keypair.private_key)
    sig_both = sig_old + cat.signature_line(data, cat.load_private_key(other_keypair.private_key))
    assert _verify(data, sig_both, [other_keypair.public_key]).serial == 5
    assert _verify(data, sig_both, [keypair.public_key]).serial == 5


def test_truncated_catalog_is_refused(keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(), keypair.private_key)
    with pytest.raises(cat.CatalogSignatureInvalid):
        _verify(data[: len(data) // 2], sig, [keypair.public_key])


def test_truncated_signature_is_refused(keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(), keypair.private_key)
    with pytest.raises(cat.CatalogSignatureInvalid):
        _verify(data, sig[:40], [keypair.public_key])


def test_oversized_catalog_is_refused_before_it_is_parsed(keypair: keys.KeyPair) -> None:
    # Not even valid JSON: the size rule must fire before the signature or the parser look at it.
    huge = b"[" * (cat.MAX_CATALOG_BYTES + 1)
    with pytest.raises(cat.CatalogTooLarge):
        _verify(huge, b"", [keypair.public_key])


def test_oversized_signature_file_is_refused(keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(), keypair.private_key)
    with pytest.raises(cat.CatalogTooLarge):
        _verify(data, sig * 200, [keypair.public_key])


def test_catalog_with_lower_serial_is_refused(keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(serial=5), keypair.private_key)
    with pytest.raises(cat.CatalogReplayed):
        _verify(data, sig, [keypair.public_key], last_serial=6)


def test_catalog_with_the_same_serial_is_accepted_again(keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(serial=5), keypair.private_key)
    assert _verify(data, sig, [keypair.public_key], last_serial=5).serial == 5


def test_expired_catalog_is_refused(keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(expires=NOW - timedelta(seconds=1)), keypair.private_key)
    with pytest.raises(cat.CatalogExpired):
        _verify(data, sig, [keypair.public_key])


def test_signed_but_malformed_catalog_is_refused(keypair: keys.KeyPair) -> None:
    obj = _catalog().to_json()
    obj["channels"]["stable"]["releases"][0]["commit"] = "not-a-checksum"
    data = json.dumps(obj).encode()
    sig = cat.signature_line(data, cat.load_private_key(keypair.private_key))
    with pytest.raises(cat.CatalogMalformed, match=r"releases\[0\]\.commit"):
        _verify(data, sig, [keypair.public_key])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o.update(schema="fieldshift.catalog/2"),
        lambda o: o.update(serial=True),
        lambda o: o.update(serial=0),
        lambda o: o.update(expires="2026-11-25 12:00"),
        lambda o: o.pop("channels"),
        lambda o: o["channels"]["stable"]["releases"].reverse(),
        lambda o: o["channels"]["stable"]["releases"][1].update(version="1.0"),
        lambda o: o["channels"]["stable"]["releases"][1]["deltas"].append({"from": None, "size": -1}),
        lambda o: o["channels"]["stable"].update(allow_downgrade="yes"),
        lambda o: o["channels"].update({"bad name": o["channels"]["stable"]}),
    ],
)
def test_schema_violations_are_malformed(mutate) -> None:
    obj = _catalog().to_json()
    mutate(obj)
    with pytest.raises(cat.CatalogMalformed):
        cat.parse(json.dumps(obj).encode())


def test_duplicate_keys_are_malformed() -> None:
    text = _catalog().to_bytes().decode().replace('"serial": 5', '"serial": 5, "serial": 9')
    with pytest.raises(cat.CatalogMalformed, match="twice"):
        cat.parse(text.encode())


def test_every_catalog_exception_is_a_user_error() -> None:
    from greenboot.errors import UserError

    for name in ("CatalogTooLarge", "CatalogSignatureInvalid", "CatalogMalformed", "CatalogReplayed",
                 "CatalogExpired", "DowngradeRefused", "CommitMismatch", "SigningKeyError", "TrustedKeyError"):
        exc = getattr(cat, name)
        assert issubclass(exc, cat.CatalogError) and issubclass(exc, UserError), name
    assert len({cat.CatalogReplayed, cat.CatalogExpired, cat.CatalogSignatureInvalid, cat.CatalogTooLarge}) == 4


def test_group_readable_signing_key_is_refused(keypair: keys.KeyPair, tmp_path: Path) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(keypair.private_key.read_bytes())
    os.chmod(loose, 0o640)
    with pytest.raises(cat.SigningKeyError, match="chmod 600"):
        cat.sign(_catalog(), loose)


def test_missing_signing_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(cat.SigningKeyError, match="does not exist"):
        cat.sign(_catalog(), tmp_path / "nope.key")


def test_generated_private_key_is_owner_only(keypair: keys.KeyPair) -> None:
    assert (keypair.private_key.stat().st_mode & 0o777) == 0o600
    assert keypair.public_key.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_key_generation_does_not_overwrite_an_existing_key(keypair: keys.KeyPair) -> None:
    from builder.keys import KeyGenerationError

    with pytest.raises(KeyGenerationError, match="already exists"):
        keys.generate(keypair.private_key.parent)


def test_verify_without_trusted_keys_is_refused(keypair: keys.KeyPair) -> None:
    data, sig = cat.sign(_catalog(), keypair.private_key)
    with pytest.raises(cat.TrustedKeyError):
        _verify(data, sig, [])


def test_pulled_commit_must_be_the_signed_one() -> None:
    release = _release("1.0", C1)
    cat.check_commit(release, C1)
    with pytest.raises(cat.CommitMismatch):
        cat.check_commit(release, C2)


def test_downgrade_is_refused_unless_the_channel_allows_it() -> None:
    strict = _catalog().channel("stable")
    with pytest.raises(cat.DowngradeRefused):
        cat.check_downgrade(strict, "1.1", strict.release("1.0"))
    lenient = _catalog(allow_downgrade=True).channel("stable")
    cat.check_downgrade(lenient, "1.1", lenient.release("1.0"))


def test_versions_compare_numerically() -> None:
    assert cat.is_newer("1.10", "1.9")
    assert cat.is_newer("1.0.1", "1.0")
    assert not cat.is_newer("1.0", "1.0")
    assert cat.is_newer("42.20261125.1", "42.20261125.0")


def _chan_catalog(*releases: cat.Release, allow_downgrade: bool = False) -> cat.Catalog:
    chan = cat.Channel("stable", tuple(releases), allow_downgrade)
    return cat.Catalog(1, NOW, NOW + timedelta(days=1), (chan,))


def test_plan_update_goes_to_the_newest_release() -> None:
    c = _chan_catalog(_release("1", C1), _release("2", C2), _release("3", C3))
    assert cat.plan_update(c, "stable", "1", now=NOW, bucket=0.5).version == "3"
    assert cat.plan_update(c, "stable", "3", now=NOW, bucket=0.5) is None


def test_plan_update_stops_at_a_barrier_first() -> None:
    c = _chan_catalog(_release("1", C1), _release("2", C2, barrier=True), _release("3", C3))
    assert cat.plan_update(c, "stable", "1", now=NOW, bucket=0.5).version == "2"
    assert cat.plan_update(c, "stable", "2", now=NOW, bucket=0.5).version == "3"


def test_plan_update_skips_withdrawn_releases() -> None:
    c = _chan_catalog(_release("1", C1), _release("2", C2), _release("3", C3, withdrawn=True))
    assert cat.plan_update(c, "stable", "1", now=NOW, bucket=0.5).version == "2"


def test_plan_update_respects_phased_rollout() -> None:
    rollout = cat.Rollout(start=NOW - timedelta(hours=1), hours=4)  # 25 % offered now
    c = _chan_catalog(_release("1", C1), _release("2", C2, rollout=rollout))
    assert cat.plan_update(c, "stable", "1", now=NOW, bucket=0.1).version == "2"
    assert cat.plan_update(c, "stable", "1", now=NOW, bucket=0.9) is None
    assert cat.plan_update(c, "stable", "1", now=NOW + timedelta(hours=3), bucket=0.9).version == "2"


def test_plan_update_leaves_a_withdrawn_release_only_when_downgrades_are_allowed() -> None:
    rels = (_release("1", C1), _release("2", C2, withdrawn=True))
    assert cat.plan_update(_chan_catalog(*rels), "stable", "2", now=NOW, bucket=0.5) is None
    back = cat.plan_update(_chan_catalog(*rels, allow_downgrade=True), "stable", "2", now=NOW, bucket=0.5)
    assert back is not None and back.version == "1"


def test_rollout_bucket_is_stable_and_in_range() -> None:
    b = cat.rollout_bucket("device-42")
    assert b == cat.rollout_bucket("device-42")
    assert 0.0 <= b < 1.0
