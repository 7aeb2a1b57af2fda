"""The sealed-features envelope: what the producer writes in a request's ``sealed`` field.

    byte 0      envelope version (2; version 1 is still read)
    byte 1      n = length of the key id
    2 .. 2+n    key id (ASCII)
    next 16     salt (random per record; version 2 only)
    next 12     AES-GCM nonce (random per record)
    rest        AES-GCM ciphertext + 16-byte tag of the sealed features, an Avro
                map<string, double> (the same encoding as the clear ``features``)

Version 2 seals each record with its own key, derived from the field key and the record's
random salt (HKDF-SHA256). AES-GCM with random 96-bit nonces allows about 2^32 messages
per key (NIST SP 800-38D); at 40,000 sealed requests a second one field key would pass
that in about 30 hours. A derived key seals one record, so the bound applies to the
salts instead: two records share a key only if their 128-bit salts collide. Version 1
sealed with the field key itself.

The associated data binds the ciphertext to its request: the key id, request id, entity
id and model, and since version 2 also ``created_at``, ``deadline_ms`` and ``priority``
(a splice that changes when a request was made, when it must be answered or how
important it is fails to open). The key id is also sent as the ``streaminfer.key_id``
header for tools and operators; the envelope's copy is the one that counts (a dead
letter or backup read without headers still opens).
"""

from __future__ import annotations

import functools
import os
from io import BytesIO
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from processors.sealing.keyring import KEY_ID, Keyring
from schemas.exceptions import StreaminferError

VERSION = 2  # what seal_features writes
READS = (1, 2)
NONCE_BYTES = 12
SALT_BYTES = 16
KEY_ID_HEADER = "streaminfer.key_id"
_MAP = parse_schema({"type": "map", "values": "double"})
_AAD_PREFIX = b"streaminfer.sealed.v1\x00"
_AAD_PREFIX_V2 = b"streaminfer.sealed.v2\x00"
_HKDF_INFO = b"streaminfer.sealed.v2 record key\x00"
SEALED_FIELDS = "sealed_fields"  # key of an opened request: the names that were sealed


class SealedFieldsError(StreaminferError):
    """Sealed features cannot be opened (wrong or missing key, altered bytes) or a
    request breaks the sealing policy; the record is dead-lettered with stage
    ``decrypt``."""

    retriable = False


@functools.lru_cache(maxsize=64)
def _cipher(key: bytes) -> AESGCM:
    """One AESGCM (its key schedule) per key, not per record."""
    return AESGCM(key)


def _aad(kid: str, request: dict[str, Any], version: int = VERSION) -> bytes:
    parts = [kid, request["request_id"], request["entity_id"], request["model"]]
    if version == 1:
        return _AAD_PREFIX + b"\x00".join(p.encode() for p in parts)
    # Decoded requests always carry created_at (the schema requires it); a dict without
    # it binds "" rather than raise (the fuzzer's request had none).
    created, deadline = request.get("created_at"), request.get("deadline_ms")
    parts += ["" if created is None else str(int(created)),
              "" if deadline is None else str(int(deadline)),
              str(int(request.get("priority") or 0))]
    return _AAD_PREFIX_V2 + b"\x00".join(p.encode() for p in parts)


def _record_key(key: bytes, salt: bytes, kid: str) -> bytes:
    """The key that seals one record (version 2): HKDF-SHA256 of the field key."""
    return HKDF(algorithm=hashes.SHA256(), length=len(key), salt=salt,
                info=_HKDF_INFO + kid.encode()).derive(key)


def seal_features(ring: Keyring, request: dict[str, Any], fields: frozenset[str]
                  ) -> tuple[dict[str, Any], str | None]:
    """The request with ``fields`` moved from ``features`` into ``sealed``, and the key id
    used (None when the request carries none of them: nothing to seal)."""
    features: dict[str, float] = request["features"]
    secret = {k: float(v) for k, v in features.items() if k in fields}
    if not secret:
        return request, None
    kid, key = ring.primary_key()
    buf = BytesIO()
    schemaless_writer(buf, _MAP, secret)
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    body = AESGCM(_record_key(key, salt, kid)).encrypt(nonce, buf.getvalue(),
                                                       _aad(kid, request))
    kid_bytes = kid.encode()
    sealed = bytes((VERSION, len(kid_bytes))) + kid_bytes + salt + nonce + body
    clear = {k: v for k, v in features.items() if k not in secret}
    return {**request, "features": clear, "sealed": sealed}, kid


def sealed_key_id(sealed: bytes) -> str:
    """The key id an envelope names (no key needed)."""
    if len(sealed) < 2 or sealed[0] not in READS:
        version = sealed[0] if sealed else "none"
        raise SealedFieldsError(f"sealed features: envelope version {version}, this worker "
                                f"reads versions {', '.join(map(str, READS))} (upgrade the "
                                "worker, or check the producer)")
    n = sealed[1]
    kid = sealed[2:2 + n].decode("ascii", errors="replace")
    salt = SALT_BYTES if sealed[0] == 2 else 0
    if len(sealed) < 2 + n + salt + NONCE_BYTES + 16 or not KEY_ID.match(kid):
        raise SealedFieldsError(f"sealed features: a truncated or malformed envelope "
                                f"({len(sealed)} bytes)")
    return kid


def open_sealed(ring: Keyring, request: dict[str, Any], header_kid: str | None = None
                ) -> dict[str, Any]:
    """The request with its sealed features opened back into ``features`` (unchanged
    when it has none). Raises SealedFieldsError naming the key id and what failed;
    the message never holds a feature value."""
    sealed: bytes | None = request.get("sealed")
    if sealed is None:
        return request
    kid = sealed_key_id(sealed)
    if header_kid is not None and header_kid != kid:
        raise SealedFieldsError(f"the {KEY_ID_HEADER} header says {header_kid!r} but the "
                                f"sealed features name key {kid!r}: the record was altered")
    key = ring.key(kid)
    if key is None:
        raise SealedFieldsError(f"sealed with key {kid!r}, which is not in this worker's "
                                f"field keys ({', '.join(sorted(ring.keys)) or 'none'}; "
                                f"{ring.source}): add it with `streaminfer field-keys`, then "
                                "replay the dead letter")
    version, start = sealed[0], 2 + len(kid)
    if version == 1:
        cipher = _cipher(key)
    else:
        cipher = AESGCM(_record_key(key, sealed[start:start + SALT_BYTES], kid))
        start += SALT_BYTES
    nonce, body = sealed[start:start + NONCE_BYTES], sealed[start + NONCE_BYTES:]
    try:
        plain = cipher.decrypt(nonce, body, _aad(kid, request, version))
    except InvalidTag:
        raise SealedFieldsError(f"sealed features do not open with key {kid!r}: the key "
                                "differs from the producer's (same id, other bytes) or the "
                                "record was altered or moved to another request") from None
    buf = BytesIO(plain)
    try:
        secret = schemaless_reader(buf, _MAP, None)
    except Exception as exc:  # noqa: BLE001 - fastavro raises several types; authentic but not a map
        raise SealedFieldsError(f"sealed features opened with key {kid!r} but are not a "
                                f"feature map ({type(exc).__name__})") from None
    if not isinstance(secret, dict) or buf.tell() != len(plain):
        raise SealedFieldsError(f"sealed features opened with key {kid!r} but are not a "
                                "feature map")
    features: dict[str, float] = request["features"]
    both = sorted(set(secret) & set(features))
    if both:
        raise SealedFieldsError(f"features {both[:5]} are both sealed and in clear")
    # What was sealed travels with the request: side outputs (the input recorder) leave
    # these out whatever the model declares (issue 34, item 8).
    return {**request, "features": {**features, **secret}, "sealed": None,
            SEALED_FIELDS: tuple(sorted(secret))}
