"""A local certificate authority for ``streaminfer dev up --secure``.

One CA per dev cluster, made at start with ``cryptography``: an EC P-256 key and a
self-signed certificate valid for 30 days, and for each server (Kafka node, Redis) a key
and a certificate signed by it whose subject alternative names are every name clients
use (its container alias, ``localhost``, 127.0.0.1). Keys are PKCS#8 PEM, unencrypted but
written 0600 in a 0700 folder of the state directory, never in the repository; inside a
container they are copied in by the engine with the service's uid and mode 0600
(:mod:`stream.devcluster.secure`), never bind-mounted.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate, both PEM."""

    key_pem: bytes
    cert_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_ca(common_name: str = "streaminfer dev CA") -> Issued:
    """A self-signed CA that may sign server and client certificates (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def issue(ca: Issued, common_name: str, dns_names: list[str],
          ip_addresses: list[str] | None = None, server: bool = True) -> Issued:
    """A certificate for ``common_name`` signed by ``ca``, usable as TLS server and client
    (a Kafka node presents the same one to its peers on the inter-broker and controller
    listeners, where the principal is taken from the CN). ``server=False``: a client
    certificate only (a principal's, for Kafka's certificate listener), without names."""
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the CA key must be an EC key")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in (ip_addresses or [])]
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    now = _now()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def expires_in(cert_pem: bytes) -> datetime.timedelta:
    """How long until the certificate expires (negative when it has)."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc - _now()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only (created 0600, never briefly wider)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)
