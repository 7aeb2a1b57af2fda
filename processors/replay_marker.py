"""Replay as a privilege: a replayed request is answered however late (no deadline
fallback, no load shedding) only when its replay marker is signed by a trusted key.

``streaminfer dlq replay`` adds ``streaminfer.replay_of`` (the dead letter's coordinate) and
``streaminfer.attempt``; with a signing key (``--replay-signing-key``, Ed25519, the DLQ
operator's) it also adds ``streaminfer.replay_sig``: ``<key id>:<base64 signature>`` over
the coordinate, the attempt and the SHA-256 of the record's key and value. A worker given
the public keys (``--replay-trusted-keys``) honours a marker only when that signature
verifies, so

* anyone may still *write* a ``replay_of`` header (Kafka ACLs cannot look inside a record),
  but without the operator's private key it buys nothing: the request is treated like any
  other and the marker is counted as ``unsigned``, ``unknown_key`` or ``bad_signature``;
* a genuine marker copied onto other bytes does not verify (the digest is signed);
* copied with the same bytes it is the same request again: answered once (dedupe).

Workers hold only public keys, so a compromised worker cannot mint markers. Keys are the
same kind as model-signing keys (``streaminfer models keygen``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fallback.deadletter import SourceRecord, header_value
from fallback.ratelimit import RateLimitedLog
from processors.registry.signing import key_id

_log = RateLimitedLog(logging.getLogger(__name__))
REPLAY_OF = "streaminfer.replay_of"
ATTEMPT = "streaminfer.attempt"
REPLAY_SIG = "streaminfer.replay_sig"
CONTEXT = b"streaminfer replay marker v1\n"

Verdict = Literal["none", "signed", "unsigned", "unknown_key", "bad_signature"]


def signed_bytes(replay_of: bytes, attempt: bytes, key: bytes | None, value: bytes) -> bytes:
    """What the signature covers."""
    return b"".join([CONTEXT, replay_of, b"\n", attempt, b"\n",
                     hashlib.sha256(key or b"").hexdigest().encode(), b"\n",
                     hashlib.sha256(value).hexdigest().encode()])


def sign_marker(private: Ed25519PrivateKey, replay_of: bytes, attempt: bytes,
                key: bytes | None, value: bytes) -> bytes:
    """The ``streaminfer.replay_sig`` header value for a replayed record."""
    sig = private.sign(signed_bytes(replay_of, attempt, key, value))
    return f"{key_id(private.public_key())}:{base64.b64encode(sig).decode()}".encode()


@dataclass
class ReplayPolicy:
    """Which replay markers a worker honours (``trusted``: key id -> public key; empty:
    none), and how many of each verdict it has seen (for the metric)."""

    trusted: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)

    def verdict(self, record: SourceRecord) -> Verdict:
        """``none`` without a marker; ``signed`` when its signature verifies with a trusted
        key; otherwise why it is not honoured. Counted in ``seen``."""
        headers = record.headers()
        replay_of = header_value(headers, REPLAY_OF)
        if replay_of is None:
            return "none"
        result = self._check(record, replay_of, header_value(headers, ATTEMPT) or b"",
                             header_value(headers, REPLAY_SIG))
        self.seen[result] = self.seen.get(result, 0) + 1
        return result

    def _check(self, record: SourceRecord, replay_of: bytes, attempt: bytes,
               sig_header: bytes | None) -> Verdict:
        if sig_header is None:
            return "unsigned"
        kid, sep, b64 = sig_header.decode("ascii", errors="replace").partition(":")
        public = self.trusted.get(kid) if sep else None
        if public is None:
            return "unknown_key"
        try:
            signature = base64.b64decode(b64, validate=True)
            public.verify(signature, signed_bytes(replay_of, attempt, record.key(),
                                                  record.value() or b""))
        except (InvalidSignature, ValueError):
            return "bad_signature"
        return "signed"

    def honoured(self, record: SourceRecord) -> bool:
        """Whether ``record`` is a replay to answer however late; a marker that is not
        honoured is logged (rate-limited) and counted."""
        verdict = self.verdict(record)
        if verdict not in ("none", "signed"):
            _log.warning("replay marker", "%s[%s]@%s carries a replay marker that is not "
                         "signed by a trusted key (%s): treated as a new request (deadline "
                         "and shedding apply)", record.topic(), record.partition(),
                         record.offset(), verdict, verdict=verdict)
        return verdict == "signed"

    def drain(self) -> dict[str, int]:
        """The verdict counts since the last call (for the batch's metrics)."""
        out, self.seen = self.seen, {}
        return out
