"""SHA-512 crypt (``$6$``) password hashing, written from Ulrich Drepper's specification.

"Unix crypt using SHA-256 and SHA-512" (https://www.akkadia.org/drepper/SHA-crypt.txt) defines the
algorithm implemented here; Python's ``crypt`` module is deprecated (3.11) and removed (3.13), and
osbuild hashes plain blueprint passwords the same way (``osbuild/images`` ``pkg/crypt``).
"""

from __future__ import annotations

import hashlib
import secrets

ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DEFAULT_ROUNDS = 5000
MIN_ROUNDS = 1000
MAX_ROUNDS = 999_999_999
SALT_MAX = 16
PREFIX = "$6$"

# Byte order of the final 64-byte digest in the output, three bytes per four characters
# (step 22 of the specification, SHA-512 table).
_PERMUTATION = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48),
    (28, 49, 7), (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13),
    (56, 14, 35), (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41),
)  # fmt: skip

# Prefixes of crypt(3) hashes a blueprint may already carry (osbuild's PasswordIsCrypted checks
# $2b$, $6$ and $5$; yescrypt and the other bcrypt variants are common on current systems too).
_CRYPTED_PREFIXES = ("$1$", "$2a$", "$2b$", "$2y$", "$5$", "$6$", "$y$", "$gy$", "$7$")


def is_crypted(password: str) -> bool:
    """True when ``password`` already is a crypt(3) hash rather than plain text."""
    return password.startswith(_CRYPTED_PREFIXES)


def random_salt(length: int = SALT_MAX) -> str:
    """A random salt from the crypt alphabet."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def salt_from(seed: bytes, length: int = SALT_MAX) -> str:
    """A deterministic salt derived from ``seed`` (for reproducible builds)."""
    digest = hashlib.sha512(seed).digest()
    return "".join(ALPHABET[b % 64] for b in digest[:length])


def _repeat(block: bytes, length: int) -> bytes:
    """``block`` repeated and cut to ``length`` bytes (steps 11, 16 and 20 of the specification)."""
    whole, rest = divmod(length, len(block))
    return block * whole + block[:rest]


def _encode(digest: bytes) -> str:
    out = []
    for b2, b1, b0 in _PERMUTATION:
        w = (digest[b2] << 16) | (digest[b1] << 8) | digest[b0]
        for _ in range(4):
            out.append(ALPHABET[w & 0x3F])
            w >>= 6
    w = digest[63]
    for _ in range(2):
        out.append(ALPHABET[w & 0x3F])
        w >>= 6
    return "".join(out)


def crypt_sha512(password: str | bytes, setting: str) -> str:
    """Hash ``password`` with a ``$6$[rounds=N$]salt[$...]`` setting string, exactly like glibc."""
    if not setting.startswith(PREFIX):
        raise ValueError(f"not a SHA-512 crypt setting: {setting!r}")
    rest = setting[len(PREFIX) :]
    rounds = DEFAULT_ROUNDS
    explicit_rounds = False
    if rest.startswith("rounds="):
        spec, sep, after = rest[len("rounds=") :].partition("$")
        if sep and spec.isdigit():
            rounds = min(max(int(spec), MIN_ROUNDS), MAX_ROUNDS)
            explicit_rounds = True
            rest = after
    salt_text = rest.split("$", 1)[0][:SALT_MAX]
    return _hash(password.encode() if isinstance(password, str) else password, salt_text, rounds, explicit_rounds)


def _hash(key: bytes, salt_text: str, rounds: int, explicit_rounds: bool) -> str:
    salt = salt_text.encode()
    sha = hashlib.sha512
    alternate = sha(key + salt + key).digest()  # steps 4-8
    a = sha(key + salt)  # steps 1-3
    a.update(_repeat(alternate, len(key)))  # steps 9-10
    n = len(key)
    while n:  # step 11: one byte-string per bit of the key length
        a.update(alternate if n & 1 else key)
        n >>= 1
    digest_a = a.digest()  # step 12
    p_bytes = _repeat(sha(key * len(key)).digest(), len(key))  # steps 13-16
    s_bytes = _repeat(sha(salt * (16 + digest_a[0])).digest(), len(salt))  # steps 17-20
    current = digest_a
    for i in range(rounds):  # step 21
        c = sha()
        c.update(p_bytes if i & 1 else current)
        if i % 3:
            c.update(s_bytes)
        if i % 7:
            c.update(p_bytes)
        c.update(current if i & 1 else p_bytes)
        current = c.digest()
    rounds_part = f"rounds={rounds}$" if explicit_rounds else ""
    return f"{PREFIX}{rounds_part}{salt_text}${_encode(current)}"


def hash_password(plain: str, salt: str | None = None, *, rounds: int | None = None) -> str:
    """SHA-512 crypt of ``plain`` with ``salt`` (random when ``None``), as ``/etc/shadow`` stores it."""
    salt = random_salt() if salt is None else salt
    if not salt or len(salt) > SALT_MAX or any(c not in ALPHABET for c in salt):
        raise ValueError(f"salt must be 1-{SALT_MAX} characters of [./0-9A-Za-z]")
    setting = PREFIX + (f"rounds={rounds}$" if rounds is not None else "") + salt
    return crypt_sha512(plain, setting)


def verify(plain: str, hashed: str) -> bool:
    """True when ``plain`` hashes to ``hashed`` (a ``$6$`` string)."""
    return secrets.compare_digest(crypt_sha512(plain, hashed), hashed)
