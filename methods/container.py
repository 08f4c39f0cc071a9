"""The one bitstream container syntax every coded method shares: a version byte and unsigned LEB128 varints for
headers, and named streams packed one after another with their lengths.

Why one: a decoder written elsewhere reads every method's header the same way, and a malformed one fails with the
same kind of message (:class:`ContainerError`, a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError(f"cannot write a negative value ({value}) in the header")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def get_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("header ends inside a number")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("header number too long")


def pack_streams(streams: Mapping[str, bytes]) -> bytes:
    """Named streams as one: count, then (name, length) per stream as varints, then the bytes in order."""
    out = bytearray()
    put_varint(out, len(streams))
    for name, data in streams.items():
        encoded = name.encode("utf-8")
        put_varint(out, len(encoded))
        out += encoded
        put_varint(out, len(data))
    return bytes(out) + b"".join(streams.values())


def unpack_streams(data: bytes) -> dict[str, bytes]:
    """Inverse of :func:`pack_streams`; ValueError naming what is wrong for malformed input."""
    count, pos = get_varint(data, 0)
    names: list[tuple[str, int]] = []
    for _ in range(count):
        n, pos = get_varint(data, pos)
        if pos + n > len(data):
            raise ValueError("container ends inside a stream name")
        name = data[pos : pos + n].decode("utf-8")
        length, pos = get_varint(data, pos + n)
        names.append((name, length))
    streams = {}
    for name, length in names:
        if pos + length > len(data):
            raise ValueError(f"container too short: stream {name!r} needs {length} bytes, {len(data) - pos} are left")
        streams[name] = data[pos : pos + length]
        pos += length
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes after the last stream")
    return streams


class ContainerError(ValueError):
    """A header or container that is not what its reader expects; the message says what (``what``) and why."""


def write_header(version: int, values: Iterable[int]) -> bytes:
    """A header: the format's version byte, then each value as a varint."""
    out = bytearray([version])
    for v in values:
        put_varint(out, int(v))
    return bytes(out)


def read_header(data: bytes, version: int, count: int, what: str) -> tuple[list[int], int]:
    """``count`` varints after the version byte, and where they end; :class:`ContainerError` naming ``what``."""
    if not data or data[0] != version:
        raise ContainerError(f"{what}: not a version-{version} header (first byte {data[:1]!r})")
    values, pos = [], 1
    try:
        for _ in range(count):
            v, pos = get_varint(data, pos)
            values.append(v)
    except ValueError as exc:
        raise ContainerError(f"{what}: malformed header: {exc}") from exc
    return values, pos
