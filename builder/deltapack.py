"""Repack a static delta smaller than libostree makes it: fewer bytes for every device, same format.

``ostree static-delta generate`` (2022.7) compresses each part with xz at preset 6. The same part
data packed with preset 9 "extreme" and ``pb=0`` (bsdiff output and dirtree checksums are not
4-byte aligned data) is about 9 % smaller on a one-package Debian update (306 284 -> 278 944 bytes
for the openssl upgrade of ``bench/release_bytes.py``). The dictionary stays at most 8 MiB, as with
preset 6, so a device needs no more memory to unpack it.

A part file is the GVariant ``(yay)``: one compression byte (``x`` = xz) and the stream. The
superblock lists every part as ``(u ay t t ay)``: version, sha256 of the part file, its size, its
uncompressed size, its objects. Only the checksum (32 bytes) and the size (a ``t`` at the next
8-byte boundary, in the superblock's byte order) change, so both are patched in place and the
superblock keeps its layout. ``ostree static-delta apply-offline`` and ``ostree pull`` check each part
against that checksum. The repo summary (``ostree summary -u``, run by publish afterwards) records
the new superblock's checksum.

libostree sends a changed file as a "rollsum" (literal chunks plus copies from the old file) when
at least half its content-defined chunks match, and as bsdiff otherwise. For files where a few bytes
moved all over (dpkg's ``status``, a rebuilt shared object) the rollsum literals cost far more than a
bsdiff: 11 kB against under 1 kB for the four such files of the openssl update. With an archive repo
at hand (``repo``), such objects are re-encoded with the ops libostree itself emits for bsdiff
(``set-read-source``, ``open``, ``bspatch``, ``close``, ``unset-read-source``), the patch made by the
``bsdiff`` tool (its BSDIFF40 blocks re-laid out as the plain stream libostree's bspatch reads, and
checked by patching in Python before use); the part is kept only if that makes it smaller. Without
the ``bsdiff`` tool on the build host (Debian package ``bsdiff``) only the recompression is done.

Crash safety: new files are written next to the old ones as ``*.repack`` and synced, then the
superblock is removed (a delta without a superblock does not exist for ``generate --if-not-exists``,
so ``publish --recover`` regenerates it), the parts are renamed over, and the new superblock is
renamed in last. Running it again on a repacked delta changes nothing.
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from greenboot import atomic

XZ = b"x"
STAGING_SUFFIX = ".repack"
MAX_DICT = 8 << 20  # libostree's own preset 6 dictionary: a device needs no more memory
_SIGNED_MAGIC = b"OSTSGNDT"  # a superblock wrapped by `generate --sign`: patching would break the signature


class DeltaPackError(Exception):
    """The superblock does not have the layout this module patches; the delta was left as it was."""


@dataclass(frozen=True)
class Repacked:
    """Sizes of the delta (superblock + parts) before and after."""

    before: int
    after: int


def _filters(raw_size: int) -> list[dict]:
    dict_size = 1 << 16
    while dict_size < raw_size and dict_size < MAX_DICT:
        dict_size <<= 1
    return [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": dict_size, "pb": 0}]


# --------------------------------------------------------------------------------------------
# Re-encoding rollsum objects as bsdiff (part content: GVariant (a(uuu)aa(ayay)ayay) + ops).

_OP_SPLICE, _OP_OPEN, _OP_WRITE, _OP_SET_SOURCE, _OP_UNSET_SOURCE, _OP_CLOSE, _OP_BSPATCH = b"SowrRcB"
_ARGS = {_OP_OPEN: 3, _OP_WRITE: 2, _OP_SET_SOURCE: 1, _OP_UNSET_SOURCE: 0, _OP_CLOSE: 0, _OP_BSPATCH: 2}
_FILE = 1  # OstreeObjectType of a content object


def _split(content: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(modes, xattrs, payload, ops) of a part's GVariant ``(a(uuu)aa(ayay)ayay)``."""
    size = len(content)
    width = next(w for w in (1, 2, 4, 8) if size < 1 << (8 * w))
    ends = [int.from_bytes(content[size - (i + 1) * width:size - i * width], "little") for i in range(3)]
    if not ends[0] <= ends[1] <= ends[2] <= size - 3 * width:
        raise DeltaPackError("unexpected delta part layout")
    return content[:ends[0]], content[ends[0]:ends[1]], content[ends[1]:ends[2]], content[ends[2]:size - 3 * width]


def _join(modes: bytes, xattrs: bytes, payload: bytes, ops: bytes) -> bytes:
    body = modes + xattrs + payload + ops
    ends = (len(modes), len(modes) + len(xattrs), len(modes) + len(xattrs) + len(payload))
    width = next(w for w in (1, 2, 4, 8) if len(body) + 3 * w < 1 << (8 * w))
    return body + b"".join(e.to_bytes(width, "little") for e in reversed(ends))


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _put(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _ops(ops: bytes, object_types: Callable[[int], int]) -> list[tuple[int, list[int], int]]:
    """[(opcode, args, object index)]; ``object_types(i)`` is the type of the part's i-th object."""
    out: list[tuple[int, list[int], int]] = []
    at = index = 0
    while at < len(ops):
        code = ops[at]
        at += 1
        if code == _OP_SPLICE:
            count = 4 if object_types(index) == _FILE else 2
        elif code in _ARGS:
            count = _ARGS[code]
        else:
            raise DeltaPackError(f"unknown delta opcode {code!r}")
        args = []
        for _ in range(count):
            value, at = _varint(ops, at)
            args.append(value)
        out.append((code, args, index))
        if code in (_OP_SPLICE, _OP_CLOSE):
            index += 1
    return out


def _file_content(repo: Path, checksum: str) -> bytes:
    """The file bytes of a content object of an archive repo (``.filez``: header, then raw deflate)."""
    data = (repo / "objects" / checksum[:2] / f"{checksum[2:]}.filez").read_bytes()
    header = struct.unpack(">I", data[:4])[0]
    return zlib.decompressobj(-15).decompress(data[8 + header:])


def _offtin(buf: bytes) -> int:
    value = int.from_bytes(buf[:7] + bytes([buf[7] & 0x7F]), "little")
    return -value if buf[7] & 0x80 else value


def _bsdiff_stream(old: bytes, new: bytes) -> bytes | None:
    """A patch in the stream layout libostree's bspatch reads (per block: 24-byte control, diff, extra)."""
    tool = shutil.which("bsdiff")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="deltapack.") as tmp:
        a, b, patch = Path(tmp, "old"), Path(tmp, "new"), Path(tmp, "patch")
        a.write_bytes(old)
        b.write_bytes(new)
        subprocess.run([tool, str(a), str(b), str(patch)], check=True, capture_output=True)
        data = patch.read_bytes()
    if data[:8] != b"BSDIFF40":
        return None
    ctrl_len, diff_len = _offtin(data[8:16]), _offtin(data[16:24])
    ctrl = bz2.decompress(data[32:32 + ctrl_len])
    diff = bz2.decompress(data[32 + ctrl_len:32 + ctrl_len + diff_len])
    extra = bz2.decompress(data[32 + ctrl_len + diff_len:])
    out, patched = bytearray(), bytearray()
    dpos = epos = oldpos = 0
    for at in range(0, len(ctrl), 24):
        x, y, z = (_offtin(ctrl[at + i:at + i + 8]) for i in (0, 8, 16))
        out += ctrl[at:at + 24] + diff[dpos:dpos + x] + extra[epos:epos + y]
        chunk = diff[dpos:dpos + x]  # check it: patch the old bytes the way bspatch does
        patched += bytes((c + (old[oldpos + i] if 0 <= oldpos + i < len(old) else 0)) & 0xFF
                         for i, c in enumerate(chunk))
        patched += extra[epos:epos + y]
        dpos, epos, oldpos = dpos + x, epos + y, oldpos + x + z
    return bytes(out) if bytes(patched) == new else None


def _rollsums_as_bsdiff(content: bytes, repo: Path, object_types: Callable[[int], int],
                        object_checksum: Callable[[int], str]) -> bytes | None:
    """The part content with every rollsum-encoded file object re-encoded as bsdiff, or None if none."""
    modes, xattrs, payload, ops = _split(content)
    decoded = _ops(ops, object_types)
    by_object: dict[int, list[tuple[int, list[int], int]]] = {}
    for op in decoded:
        by_object.setdefault(op[2], []).append(op)
    rollsums = {i for i, group in by_object.items()
                if {code for code, _, _ in group} & {_OP_OPEN, _OP_BSPATCH} == {_OP_OPEN}}
    patches: dict[int, tuple[int, bytes]] = {}  # object -> (payload offset of the old checksum, patch)
    for i in rollsums:
        source = next((args[0] for code, args, _ in by_object[i] if code == _OP_SET_SOURCE), None)
        if source is None:
            continue
        try:
            old = _file_content(repo, payload[source:source + 32].hex())
            patch = _bsdiff_stream(old, _file_content(repo, object_checksum(i)))
        except (OSError, ValueError, zlib.error, struct.error, subprocess.CalledProcessError):
            continue  # object not in this repo, or no patch: it stays a rollsum
        if patch is not None:
            patches[i] = (source, patch)
    if not patches:
        return None
    new_payload = bytearray()
    placed: dict[tuple[int, int], int] = {}

    def place(offset: int, length: int, data: bytes | None = None) -> int:
        key = (offset, length) if data is None else (-1 - len(placed), length)
        if key not in placed:
            placed[key] = len(new_payload)
            new_payload.extend(payload[offset:offset + length] if data is None else data)
        return placed[key]

    new_ops = bytearray()
    reading_source = False
    opened: set[int] = set()
    for code, args, i in decoded:
        if i in patches and (code == _OP_OPEN or i in opened):
            if code == _OP_OPEN:
                opened.add(i)
                source, patch = patches[i]
                new_ops += bytes([_OP_SET_SOURCE]) + _put(place(source, 32))
                new_ops += bytes([_OP_OPEN]) + b"".join(_put(a) for a in args)
                new_ops += bytes([_OP_BSPATCH]) + _put(place(0, len(patch), patch)) + _put(len(patch))
                new_ops += bytes([_OP_CLOSE, _OP_UNSET_SOURCE])
                reading_source = False
            continue  # the object's rollsum ops, 'open' through 'close', are replaced
        if code == _OP_SPLICE:
            args = [*args[:-1], place(args[-1], args[-2])] if len(args) == 4 else [args[0], place(args[1], args[0])]
        elif code == _OP_WRITE and not reading_source:
            args = [args[0], place(args[1], args[0])]
        elif code == _OP_SET_SOURCE:
            args = [place(args[0], 32)]
            reading_source = True
        elif code == _OP_BSPATCH:
            args = [place(args[0], args[1]), args[1]]
        if code in (_OP_UNSET_SOURCE, _OP_CLOSE, _OP_SPLICE):
            reading_source = False
        new_ops += bytes([code]) + b"".join(_put(a) for a in args)
    return _join(modes, xattrs, bytes(new_payload), bytes(new_ops))


def _pack(content: bytes) -> bytes:
    return XZ + lzma.compress(content, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=_filters(len(content)))


def _recompress(part: bytes, rewrite: Callable[[bytes], bytes | None] | None = None) -> bytes | None:
    """The part packed harder (and with rollsums as bsdiff when ``rewrite`` makes it smaller), or None
    when that is not smaller (or the part is not xz)."""
    if part[:1] != XZ:
        return None
    content = lzma.decompress(part[1:], format=lzma.FORMAT_XZ)
    best = _pack(content)
    try:
        rewritten = rewrite(content) if rewrite is not None else None
    except DeltaPackError:
        rewritten = None  # a part this module cannot read stays as libostree encoded it, packed harder
    if rewritten is not None:
        candidate = _pack(rewritten)
        best = candidate if len(candidate) < len(best) else best
    return best if len(best) < len(part) else None


def _part_entry(superblock: bytes, part: bytes) -> tuple[int, int]:
    """(offset of the part's checksum, offset of its size) in the superblock."""
    checksum = hashlib.sha256(part).digest()
    at = superblock.find(checksum)
    if at < 0 or superblock.find(checksum, at + 1) >= 0:
        raise DeltaPackError("the part's checksum is not in the superblock exactly once")
    return at, (at + len(checksum) + 7) & ~7


def patch_superblock(superblock: bytes, old: bytes, new: bytes) -> bytes:
    """``superblock`` with the checksum and size of part ``old`` replaced by those of ``new``."""
    at, size_at = _part_entry(superblock, old)
    orders: tuple[Literal["little"], Literal["big"]] = ("little", "big")
    for order in orders:
        if superblock[size_at:size_at + 8] == len(old).to_bytes(8, order):
            return (superblock[:at] + hashlib.sha256(new).digest() + superblock[at + 32:size_at]
                    + len(new).to_bytes(8, order) + superblock[size_at + 8:])
    raise DeltaPackError("the part's size does not follow its checksum in the superblock")


def _rewriter(superblock: bytes, part: bytes, repo: Path) -> Callable[[bytes], bytes | None]:
    """Re-encodes the rollsum objects of ``part``, whose object list follows its sizes in the superblock."""
    _, size_at = _part_entry(superblock, part)
    objects = size_at + 16  # after the size and the uncompressed size: (objtype byte + 32-byte checksum)*

    def entry(i: int) -> bytes:
        start = objects + 33 * i
        if start + 33 > len(superblock):
            raise DeltaPackError("the delta part has more objects than its superblock entry")
        return superblock[start:start + 33]

    return lambda content: _rollsums_as_bsdiff(content, repo, lambda i: entry(i)[0], lambda i: entry(i)[1:].hex())


def _parts(delta_dir: Path) -> list[Path]:
    return sorted((p for p in delta_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def _write_staged(path: Path, data: bytes) -> Path:
    staged = path.with_name(path.name + STAGING_SUFFIX)
    with open(staged, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fchmod(fh.fileno(), 0o644)
        os.fsync(fh.fileno())
    return staged


def repack(delta_dir: Path, *, repo: Path | None = None, workers: int | None = None) -> Repacked:
    """Recompress every xz part of the static delta in ``delta_dir`` that gets smaller; patch the superblock.

    With ``repo`` (the archive repo holding both commits) rollsum-encoded objects are also tried as bsdiff.
    """
    for leftover in delta_dir.glob(f"*{STAGING_SUFFIX}"):
        leftover.unlink()  # from an interrupted run: never part of the delta
    superblock_path = delta_dir / "superblock"
    superblock = superblock_path.read_bytes()
    parts = _parts(delta_dir)
    before = len(superblock) + sum(p.stat().st_size for p in parts)
    if superblock.startswith(_SIGNED_MAGIC) or not parts:
        return Repacked(before, before)
    olds = [p.read_bytes() for p in parts]
    def one(old: bytes) -> bytes | None:
        return _recompress(old, _rewriter(superblock, old, repo) if repo is not None else None)

    # Each worker holds a part (<= 32 MiB unpacked) and an xz -9e encoder (~100 MiB): at most 4 at once.
    with ThreadPoolExecutor(max_workers=workers or min(len(parts), os.cpu_count() or 1, 4)) as pool:
        news = list(pool.map(one, olds))  # lzma releases the GIL
    changed = [(path, old, new) for path, old, new in zip(parts, olds, news) if new is not None]
    if not changed:
        return Repacked(before, before)
    patched = superblock
    for _, old, new in changed:
        patched = patch_superblock(patched, old, new)
    staged = [(_write_staged(path, new), path) for path, _, new in changed]
    staged_superblock = _write_staged(superblock_path, patched)
    superblock_path.unlink()  # from here until the last rename the delta is absent, never inconsistent
    atomic.fsync_dir(delta_dir)
    for src, dest in staged:
        os.replace(src, dest)
    atomic.fsync_dir(delta_dir)
    os.replace(staged_superblock, superblock_path)
    atomic.fsync_dir(delta_dir)
    return Repacked(before, len(patched) + sum(p.stat().st_size for p in parts))
