"""Hand-built hostile request bytes (Avro single-object encoding, written by hand so a
length prefix can lie), shared by the unit and integration limit tests."""

from __future__ import annotations

from schemas.serde import Encoder
from stream.clients import synthetic_requests


def zigzag(n: int) -> bytes:
    """An Avro long."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def avro_str(raw: bytes) -> bytes:
    return zigzag(len(raw)) + raw


def header() -> bytes:
    request = next(iter(synthetic_requests(1, seed=1)))
    return Encoder("InferenceRequest")(request)[:10]


def hostile_map() -> bytes:
    """A request whose features map claims 2^31 - 1 entries and holds one."""
    body = avro_str(b"r-1") + avro_str(b"e-1") + avro_str(b"fraud") + zigzag(1)
    return header() + body + zigzag(2**31 - 1) + avro_str(b"a") + b"\0" * 8
