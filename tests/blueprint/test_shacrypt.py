"""SHA-512 crypt against the published specification's vectors and against OpenSSL."""

from __future__ import annotations

import subprocess

import pytest

from builder.blueprint.shacrypt import crypt_sha512, hash_password, is_crypted, salt_from, verify

# Test vectors from Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512" (SHA-512 section).
SPEC_VECTORS = [
    ("$6$saltstring", "Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("$6$rounds=10000$saltstringsaltstring", "Hello world!",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/"
     "y3RnOaw5v."),
    ("$6$rounds=5000$toolongsaltstring", "This is just a test",
     "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"),
    ("$6$rounds=1400$anotherlongsaltstring",
     "a very much longer text to encrypt.  This one even stretches over morethan one line.",
     "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"),
    ("$6$rounds=77777$short", "we have a short salt string but not a short password",
     "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"),
    ("$6$rounds=123456$asaltof16chars..", "a short string",
     "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJ"
     "eonj1"),
    ("$6$rounds=10$roundstoolow", "the minimum number is still observed",
     "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."),
]  # fmt: skip


@pytest.mark.parametrize(("setting", "password", "expected"), SPEC_VECTORS)
def test_sha512_crypt_matches_the_specification_vectors(setting: str, password: str, expected: str) -> None:
    assert crypt_sha512(password, setting) == expected


@pytest.mark.parametrize(
    ("password", "salt"),
    [("secret", "abcdefgh"), ("p", "x"), ("pässwörd with ünïcode", "0123456789ABCDEF"), ("a" * 200, "./salt")],
)
def test_hash_password_matches_openssl_passwd(password: str, salt: str) -> None:
    out = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input=password + "\n", capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert hash_password(password, salt) == out.stdout.strip()


def test_random_salts_differ_and_both_verify() -> None:
    first, second = hash_password("secret"), hash_password("secret")
    assert first != second
    assert verify("secret", first) and verify("secret", second)
    assert not verify("Secret", first)


def test_derived_salt_is_deterministic_and_in_the_crypt_alphabet() -> None:
    assert salt_from(b"seed") == salt_from(b"seed") != salt_from(b"other")
    assert hash_password("x", salt_from(b"seed")).startswith("$6$" + salt_from(b"seed") + "$")


@pytest.mark.parametrize("salt", ["", "has space", "x" * 17, "dollar$"])
def test_hash_password_refuses_salts_outside_the_alphabet(salt: str) -> None:
    with pytest.raises(ValueError):
        hash_password("x", salt)


def test_crypted_prefixes_are_recognized() -> None:
    assert is_crypted(SPEC_VECTORS[0][2]) and is_crypted("$y$j9T$abc$def") and is_crypted("$2b$10$x")
    assert not is_crypted("plain-password") and not is_crypted("$notahash")
