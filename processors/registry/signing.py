"""Ed25519 signatures over a model version's manifest.

The manifest (MANIFEST.json) already holds the sha256 of every file of the version, and
fetching re-hashes them; a signature over the manifest's bytes therefore covers every file.
The publisher signs with a private key (``models publish --sign-key``); the workers and
``models status`` check with the public keys they trust (``--model-trusted-keys``). With
``--model-require-signature`` an unsigned version, a signature by an unknown key or one
that does not verify is refused, with the reason.

Keys are PEM files (``streaminfer models keygen`` writes a pair); a key's id is the first
16 hex digits of the sha256 of its raw public bytes, recorded beside the signature so the
right key is found and named.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from processors.registry.base import RegistryError

SIGNATURE = "SIGNATURE.json"


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (the private file with mode 0600); return the key id."""
    private = Ed25519PrivateKey.generate()
    private_path.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    private_path.chmod(0o600)
    public_path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(private.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (a clear error for anything else)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise RegistryError(f"cannot read the signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RegistryError(f"{path} is not an Ed25519 private key (streaminfer models keygen "
                            "makes one)")
    return key


def load_public(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id."""
    out: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read the trusted key {path}: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise RegistryError(f"{path} is not an Ed25519 public key")
        out[key_id(key)] = key
    return out


def sign(manifest: bytes, private: Ed25519PrivateKey) -> dict[str, str]:
    """The SIGNATURE.json content for these manifest bytes."""
    return {"algorithm": "ed25519", "key_id": key_id(private.public_key()),
            "signature": base64.b64encode(private.sign(manifest)).decode()}


@dataclass(frozen=True)
class SignatureCheck:
    """What the signature of one version says."""

    state: str  # signed | unsigned | unknown-key | bad-signature
    key_id: str | None
    detail: str

    @property
    def ok(self) -> bool:
        """Signed by a trusted key and valid."""
        return self.state == "signed"


def check(folder: Path, manifest: bytes, trusted: dict[str, Ed25519PublicKey]) -> SignatureCheck:
    """Verify ``folder``'s SIGNATURE.json over the manifest bytes with the trusted keys."""
    path = folder / SIGNATURE
    if not path.exists():
        return SignatureCheck("unsigned", None, "no SIGNATURE.json")
    try:
        doc = json.loads(path.read_text())
        kid, sig = str(doc["key_id"]), base64.b64decode(doc["signature"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        return SignatureCheck("bad-signature", None, f"unreadable SIGNATURE.json: {exc}")
    key = trusted.get(kid)
    if key is None:
        return SignatureCheck("unknown-key", kid, f"signed by key {kid}, which is not trusted")
    try:
        key.verify(sig, manifest)
    except InvalidSignature:
        return SignatureCheck("bad-signature", kid,
                              f"the signature by key {kid} does not match the manifest")
    return SignatureCheck("signed", kid, f"signed by trusted key {kid}")
