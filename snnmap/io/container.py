"""The sectioned, checksummed file layout shared by model files and chip images.

    magic(8) version(u16) reserved(u16) n_sections(u32)
    n x [tag(4 ASCII) crc32(u32) offset(u64) length(u64)]
    section bytes ...
    sha256(32) over everything before it

All integers little-endian. The per-section CRC32 locates damage; the SHA-256 proves the whole.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

from snnmap.errors import SnnmapError
from snnmap.io.files import require_regular

_HEAD = struct.Struct("<8sHHI")
_ENTRY = struct.Struct("<4sIQQ")
_DIGEST = 32


def pack_container(magic: bytes, version: int, sections: list[tuple[bytes, bytes]]) -> bytes:
    assert len(magic) == 8
    table_end = _HEAD.size + _ENTRY.size * len(sections)
    entries, offset = [], table_end
    for tag, payload in sections:
        assert len(tag) == 4
        entries.append(_ENTRY.pack(tag, zlib.crc32(payload), offset, len(payload)))
        offset += len(payload)
    body = b"".join([_HEAD.pack(magic, version, 0, len(sections)), *entries, *(p for _, p in sections)])
    return body + hashlib.sha256(body).digest()


def read_container(path: str | Path, magic: bytes, versions: set[int], kind: str,
                   max_bytes: int = 1 << 34) -> tuple[int, list[tuple[str, bytes]]]:
    """Return (version, [(tag, payload)]), or raise SnnmapError naming the file and the place."""
    where = str(path)
    require_regular(path, kind)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise SnnmapError(f"{size} bytes is larger than any {kind} this tool writes", where=where)
            head = f.read(_HEAD.size)
            _check_declared_size(f, head, size, magic, versions, kind, where)
            data = head + f.read()
    except OSError as e:
        raise SnnmapError(f"cannot read {kind}: {e.strerror or e}", where=where) from None
    return parse_container(data, magic, versions, kind, where)


def _check_declared_size(f, head: bytes, size: int, magic: bytes, versions: set[int], kind: str,
                         where: str) -> None:
    """Before reading the body: the magic, and the size the section table declares against the file's.
    A sparse file of gigabytes (or any large file that is not this kind) was read whole before its
    first 8 bytes were looked at. Leaves the file positioned after the header."""
    if len(head) < _HEAD.size:
        return  # parse_container names the short file
    got_magic, version, _reserved, n = _HEAD.unpack(head)
    if got_magic != magic or version not in versions:
        parse_container(head + bytes(_DIGEST), magic, versions, kind, where)  # raises its usual message
    if _HEAD.size + _ENTRY.size * n + _DIGEST > size:
        return  # parse_container names the short table
    table = f.read(_ENTRY.size * n)
    f.seek(_HEAD.size)
    declared = _HEAD.size + _ENTRY.size * n + _DIGEST + sum(
        _ENTRY.unpack_from(table, i * _ENTRY.size)[3] for i in range(n))
    if declared != size:
        raise SnnmapError(f"its section table declares {declared} bytes, the file has {size}: truncated or "
                          f"corrupted", where=where)


def parse_container(data: bytes, magic: bytes, versions: set[int], kind: str,
                    where: str) -> tuple[int, list[tuple[str, bytes]]]:
    if len(data) < _HEAD.size + _DIGEST:
        raise SnnmapError(f"not a {kind}: only {len(data)} bytes", where=where)
    got_magic, version, _reserved, n = _HEAD.unpack_from(data, 0)
    if got_magic != magic:
        raise SnnmapError(f"not a {kind}: magic {got_magic!r}, expected {magic!r}", where=where)
    if version not in versions:
        raise SnnmapError(f"{kind} format version {version} is not supported "
                          f"(this snnmap reads {sorted(versions)})", where=where)
    table_end = _HEAD.size + _ENTRY.size * n
    body_end = len(data) - _DIGEST
    if table_end > body_end:
        raise SnnmapError(f"truncated: section table of {n} entries needs {table_end} bytes, "
                          f"file body has {body_end}", where=where)
    sections, expect = [], table_end
    for i in range(n):
        raw_tag, crc, off, length = _ENTRY.unpack_from(data, _HEAD.size + i * _ENTRY.size)
        tag = raw_tag.decode("ascii", "replace")
        if off != expect or off + length > body_end:
            raise SnnmapError(f"section #{i} ({tag}) claims bytes {off}..{off + length}, outside the "
                              f"file body (0..{body_end}) or out of order: truncated or corrupted",
                              where=where)
        payload = data[off:off + length]
        if zlib.crc32(payload) != crc:
            raise SnnmapError(f"section #{i} ({tag}, bytes {off}..{off + length}) fails its CRC32: "
                              f"the file is corrupted", where=where)
        sections.append((tag, payload))
        expect = off + length
    if expect != body_end:
        raise SnnmapError(f"{body_end - expect} stray bytes after the last section: truncated or "
                          f"corrupted", where=where)
    if hashlib.sha256(data[:body_end]).digest() != data[body_end:]:
        raise SnnmapError("SHA-256 checksum mismatch (header or table damaged): the file is corrupted",
                          where=where)
    return version, sections
