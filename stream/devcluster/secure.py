"""What ``dev up --secure`` adds to the containers: certificates, users and passwords.

* Kafka: clients connect with SASL_SSL and SCRAM-SHA-512; nodes talk to each other and to
  the KRaft controllers over TLS with client certificates (mutual TLS), whose CN
  (``broker``) is a super user. SCRAM cannot protect a KRaft controller listener: SCRAM
  credentials live in the metadata log the controllers serve, so they can be checked only
  once a quorum has a leader (three nodes with SCRAM there never formed one, "invalid
  credentials": docs/running-securely.md); the controller listener therefore uses mutual
  TLS and stays on the cluster's private network (it is never published). The
  ``StandardAuthorizer`` refuses whatever no ACL allows.
* SCRAM users are created when the storage is formatted (``--add-scram``), from a file
  the entrypoint reads, not from server.properties or the container's environment.
* Clients may instead authenticate with a certificate: the ``CERTS`` listener (mutual
  TLS, published on its own host port) takes the principal from the certificate's CN,
  so the same ACLs apply. Each principal gets a client certificate next to its password.
* Redis: TLS only (the plaintext port is off), ACL users from a file, the default user off.

Secret files reach a container through the engine (``put_archive``) into
``/run/streaminfer``, owned by the service's uid with mode 0600; the entrypoint waits for
``.ready`` before it starts. Nothing is bind-mounted, nothing lands in an image or in
``docker inspect``'s environment.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.access.declaration import Declaration
from stream.devcluster import pki
from stream.exceptions import InfrastructureError
from stream.settings import Settings

SECRETS_DIR = "/run/streaminfer"
MM2_SECRETS = "mm2-secrets.properties"  # MirrorMaker's password (password=...)
MM2_PASSWORD_PLACEHOLDER = "@MM2_PASSWORD@"  # noqa: S105 - a placeholder the entrypoint replaces
REPLICATION_PORT = 19093  # the brokers' own listener (mutual TLS) in the secure cluster
CERTS_PORT = 9094  # clients that authenticate with a certificate (mutual TLS)
BROKER_PRINCIPAL = "broker"  # the CN of the nodes' certificate
SCRAM = "SCRAM-SHA-512"
ADMIN = "admin"


@dataclass(frozen=True)
class SecureMaterial:
    """The files of one secure dev cluster, under ``root`` (0700)."""

    root: Path

    @property
    def ca(self) -> Path:
        """The CA certificate clients trust."""
        return self.root / "ca.pem"

    @property
    def passwords(self) -> Path:
        """One ``<principal>.password`` file each (0600)."""
        return self.root / "passwords"

    def password_file(self, principal: str) -> Path:
        """The password file of ``principal``."""
        return self.passwords / f"{principal}.password"

    def password(self, principal: str) -> str:
        """The password of ``principal``."""
        return self.password_file(principal).read_text().strip()

    def client_cert(self, principal: str) -> Path:
        """``principal``'s client certificate (CN = the principal), for the CERTS listener."""
        return self.root / "clients" / f"{principal}.crt"

    def client_key(self, principal: str) -> Path:
        """The private key of :meth:`client_cert` (0600)."""
        return self.root / "clients" / f"{principal}.key"

    def read(self, name: str) -> bytes:
        """A file of the material."""
        return (self.root / name).read_bytes()


def kafka_dns_names(alias_prefixes: list[str], nodes: int = 3) -> list[str]:
    """Every name a Kafka node is reached by."""
    return [f"{p}kafka-{i}" for p in alias_prefixes for i in range(1, nodes + 1)] + ["localhost"]


def prepare(root: Path, declaration: Declaration, alias_prefixes: list[str],
            extra_names: dict[str, list[str]] | None = None) -> SecureMaterial:
    """A new CA, node and Redis certificates, and a password and client certificate per
    principal, under ``root`` (replacing what a previous secure cluster left there);
    ``extra_names``: more names the ``kafka`` and ``redis`` certificates cover (compose's
    service names)."""
    material = SecureMaterial(root)
    if BROKER_PRINCIPAL in declaration.principals:
        raise InfrastructureError(
            f"the access declaration names a principal {BROKER_PRINCIPAL!r}: that name is the "
            "Kafka nodes' own (a super user); rename the principal")
    ca = pki.make_ca()
    pki.write_private(root / "ca.key", ca.key_pem)
    pki.write_private(material.ca, ca.cert_pem)
    extra = extra_names or {}
    kafka = pki.issue(ca, BROKER_PRINCIPAL, kafka_dns_names(alias_prefixes)
                      + extra.get("kafka", []), ["127.0.0.1"])
    pki.write_private(root / "kafka-node.pem", kafka.key_pem + kafka.cert_pem)
    redis_names = ([f"{p}redis" for p in alias_prefixes] + ["localhost"]
                   + extra.get("redis", []))
    redis_cert = pki.issue(ca, "redis", redis_names, ["127.0.0.1"])
    pki.write_private(root / "redis.key", redis_cert.key_pem)
    pki.write_private(root / "redis.crt", redis_cert.cert_pem)
    for name in declaration.principals:
        pki.write_private(material.password_file(name), secrets.token_urlsafe(24).encode() + b"\n")
        client = pki.issue(ca, name, [], server=False)
        pki.write_private(material.client_key(name), client.key_pem)
        pki.write_private(material.client_cert(name), client.cert_pem)
    return material


def scram_users(material: SecureMaterial, declaration: Declaration) -> bytes:
    """``--add-scram`` arguments, one per line, for the storage format."""
    lines = [f"{SCRAM}=[name={n},password={material.password(n)}]"
             for n in declaration.principals]
    return ("\n".join(lines) + "\n").encode()


def redis_acl_file(material: SecureMaterial, declaration: Declaration) -> bytes:
    """Redis' aclfile: the default user off, each declared Redis user with the SHA-256 of
    its password (what ``streaminfer acls apply`` would set)."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for name, p in declaration.principals.items():
        if p.redis is None and not p.super_user:
            continue
        rules = list(p.redis or ("~*", "&*", "+@all"))
        digest = hashlib.sha256(material.password(name).encode()).hexdigest()
        lines.append(" ".join(["user", name, "reset", "on", f"#{digest}", *rules]))
    return ("\n".join(lines) + "\n").encode()


def kafka_secure_env(env: dict[str, str], declaration: Declaration,
                     certs_address: str) -> dict[str, str]:
    """A node's environment (:func:`stream.devcluster.cluster.kafka_env`) made secure;
    ``certs_address`` (host:port) is where clients reach its certificate listener."""
    supers = ";".join(f"User:{n}" for n in [BROKER_PRINCIPAL, *declaration.super_users])
    out = dict(env)
    # Clients in the cluster's network (MirrorMaker, compose workers) use INTERNAL with
    # SCRAM like those on the host; the brokers replicate over REPLICATION (mutual TLS).
    internal = next(a for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
                    if a.startswith("INTERNAL://"))
    host = internal.removeprefix("INTERNAL://").rsplit(":", 1)[0]
    out.update({
        "STREAMINFER_SECRETS_DIR": SECRETS_DIR,
        "KAFKA_LISTENERS": f"{env['KAFKA_LISTENERS']},REPLICATION://:{REPLICATION_PORT},"
                           f"CERTS://:{CERTS_PORT}",
        "KAFKA_ADVERTISED_LISTENERS":
            f"{env['KAFKA_ADVERTISED_LISTENERS']},REPLICATION://{host}:{REPLICATION_PORT},"
            f"CERTS://{certs_address}",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "REPLICATION",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":
            "INTERNAL:SASL_SSL,EXTERNAL:SASL_SSL,CONTROLLER:SSL,REPLICATION:SSL,CERTS:SSL",
        "KAFKA_SSL_KEYSTORE_TYPE": "PEM",
        "KAFKA_SSL_KEYSTORE_LOCATION": f"{SECRETS_DIR}/node.pem",
        "KAFKA_SSL_TRUSTSTORE_TYPE": "PEM",
        "KAFKA_SSL_TRUSTSTORE_LOCATION": f"{SECRETS_DIR}/ca.pem",
        "KAFKA_LISTENER_NAME_REPLICATION_SSL_CLIENT_AUTH": "required",
        "KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH": "required",
        "KAFKA_LISTENER_NAME_CERTS_SSL_CLIENT_AUTH": "required",
        "KAFKA_SSL_PRINCIPAL_MAPPING_RULES": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "KAFKA_SASL_ENABLED_MECHANISMS": SCRAM,
        "KAFKA_LISTENER_NAME_EXTERNAL_SCRAM___SHA___512_SASL_JAAS_CONFIG":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "KAFKA_LISTENER_NAME_INTERNAL_SCRAM___SHA___512_SASL_JAAS_CONFIG":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "KAFKA_AUTHORIZER_CLASS_NAME": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "false",
        "KAFKA_SUPER_USERS": supers,
    })
    return out


def kafka_files(material: SecureMaterial, declaration: Declaration) -> dict[str, bytes]:
    """What a Kafka node needs in ``/run/streaminfer``."""
    return {"node.pem": material.read("kafka-node.pem"), "ca.pem": material.read("ca.pem"),
            "scram-users": scram_users(material, declaration)}


def redis_files(material: SecureMaterial, declaration: Declaration) -> dict[str, bytes]:
    """What a Redis node needs in ``/run/streaminfer``."""
    return {"redis.crt": material.read("redis.crt"), "redis.key": material.read("redis.key"),
            "ca.pem": material.read("ca.pem"), "users.acl": redis_acl_file(material, declaration)}


# Shell that waits (at most 120 s) for the engine to copy the secrets in.
WAIT_FOR_SECRETS_SH = (
    f"i=0; while [ ! -f {SECRETS_DIR}/.ready ]; do i=$((i+1)); "
    f"if [ $i -gt 1200 ]; then echo no secrets in {SECRETS_DIR} after 120 s >&2; exit 2; fi; "
    "sleep 0.1; done; ")
# redis-server's TLS and ACL flags with the copied-in certificate (client certificates
# optional: passwords are required).
REDIS_TLS_FLAGS = (
    f"--tls-cert-file {SECRETS_DIR}/redis.crt --tls-key-file {SECRETS_DIR}/redis.key "
    f"--tls-ca-cert-file {SECRETS_DIR}/ca.pem --tls-auth-clients optional "
    f"--aclfile {SECRETS_DIR}/users.acl")
REDIS_SECURE_COMMAND = (
    f"sh -c '{WAIT_FOR_SECRETS_SH}exec redis-server --port 0 --tls-port 6379 "
    f"{REDIS_TLS_FLAGS} --protected-mode yes --bind 0.0.0.0 --save \"\" --appendonly no'"
)


def copy_secrets(container: Any, files: dict[str, bytes]) -> None:
    """Put ``files`` into the running ``container`` (a docker-py container) at
    ``/run/streaminfer``, owned by the uid the container runs as, mode 0600 (folder 0700);
    ``.ready`` comes last and lets the entrypoint go on."""
    code, out = container.exec_run(["id", "-u"], user="")
    if code != 0:
        raise InfrastructureError(f"could not learn the uid of container {container.short_id}: "
                                  f"{out.decode(errors='replace')}")
    uid_text = out.decode().strip()
    code, out = container.exec_run(["id", "-g"], user="")
    gid = int(out.decode().strip()) if code == 0 else 0
    uid = int(uid_text)
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        folder = tarfile.TarInfo("streaminfer")
        folder.type, folder.mode, folder.uid, folder.gid, folder.mtime = (
            tarfile.DIRTYPE, 0o700, uid, gid, now)
        tar.addfile(folder)
        for name, data in [*files.items(), (".ready", b"")]:
            info = tarfile.TarInfo(f"streaminfer/{name}")
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), 0o600, uid, gid, now
            tar.addfile(info, io.BytesIO(data))
    if not container.put_archive("/run", buf.getvalue()):
        raise InfrastructureError(f"could not copy the secrets into container {container.short_id}")


@dataclass(frozen=True)
class SecureStack:
    """A secure dev cluster's material and declaration, and how its admin connects."""

    material: SecureMaterial
    declaration: Declaration

    @classmethod
    def create(cls, root: Path, namespace: str | None = None,
               alias_prefixes: list[str] | None = None,
               extra_names: dict[str, list[str]] | None = None) -> SecureStack:
        """New material under ``root`` for the packaged declaration (rendered for
        ``namespace``; certificates naming the regions' ``alias_prefixes`` and
        ``extra_names``)."""
        from stream.access.declaration import load

        declaration = load(namespace=namespace)
        return cls(prepare(root, declaration, alias_prefixes or [""], extra_names),
                   declaration)

    def kafka_env(self, env: dict[str, str], certs_address: str) -> dict[str, str]:
        """A node's environment made secure (its certificate listener at ``certs_address``)."""
        return kafka_secure_env(env, self.declaration, certs_address)

    def kafka_files(self) -> dict[str, bytes]:
        """A node's secret files."""
        return kafka_files(self.material, self.declaration)

    def redis_files(self) -> dict[str, bytes]:
        """Redis' secret files."""
        return redis_files(self.material, self.declaration)

    def mirrormaker_files(self) -> dict[str, bytes]:
        """MirrorMaker's secret files: the CA and its password (a properties file)."""
        password = self.material.password("mirrormaker")
        return {"ca.pem": self.material.read("ca.pem"),
                MM2_SECRETS: f"password={password}\n".encode()}

    def kafka_client(self, principal: str = ADMIN) -> dict[str, Any]:
        """librdkafka properties of ``principal``."""
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM,
                "sasl.username": principal, "sasl.password": self.material.password(principal),
                "ssl.ca.location": str(self.material.ca)}

    def redis_client(self, principal: str = ADMIN) -> dict[str, Any]:
        """redis-py keyword arguments of ``principal`` (for a rediss:// URL)."""
        return {"username": principal, "password": self.material.password(principal),
                "ssl_ca_certs": str(self.material.ca), "ssl_cert_reqs": "required"}


def client_env(root: Path, principal: str = ADMIN, certificate: bool = False
               ) -> dict[str, str]:
    """The STREAMINFER_* settings of ``principal`` on the secure cluster whose material is
    under ``root`` (passwords as files, never values). ``certificate``: Kafka with the
    principal's client certificate (the CERTS listener; the caller sets the bootstrap
    servers) instead of SCRAM."""
    material = SecureMaterial(root)
    kafka = ({"STREAMINFER_SECURITY_PROTOCOL": "SSL",
              "STREAMINFER_SSL_CERTIFICATE_LOCATION": str(material.client_cert(principal)),
              "STREAMINFER_SSL_KEY_LOCATION": str(material.client_key(principal))}
             if certificate else
             {"STREAMINFER_SECURITY_PROTOCOL": "SASL_SSL",
              "STREAMINFER_SASL_MECHANISM": SCRAM,
              "STREAMINFER_SASL_USERNAME": principal,
              "STREAMINFER_SASL_PASSWORD_FILE": str(material.password_file(principal))})
    return {
        **kafka,
        "STREAMINFER_SSL_CA_LOCATION": str(material.ca),
        "STREAMINFER_REDIS_USERNAME": principal,
        "STREAMINFER_REDIS_PASSWORD_FILE": str(material.password_file(principal)),
        "STREAMINFER_REDIS_CA_FILE": str(material.ca),
    }


def acting_as(base: Settings, material: SecureMaterial, principal: str, bootstrap: str,
              redis_url: str, certificate: bool = False) -> Settings:
    """``base`` (its namespace and tuning) on the secure cluster at ``bootstrap`` and
    ``redis_url``, acting as ``principal`` (its password from its file; ``certificate``:
    its client certificate, ``bootstrap`` then being the certificate listener's)."""
    kafka: dict[str, object] = (
        {"security_protocol": "SSL", "ssl_certificate_location": material.client_cert(principal),
         "ssl_key_location": material.client_key(principal)}
        if certificate else
        {"security_protocol": "SASL_SSL", "sasl_mechanism": SCRAM, "sasl_username": principal,
         "sasl_password_file": material.password_file(principal)})
    return base.model_copy(update={
        "bootstrap_servers": bootstrap, "redis_url": redis_url, **kafka,
        "ssl_ca_location": material.ca, "redis_username": principal,
        "redis_password_file": material.password_file(principal),
        "redis_ca_file": material.ca})


def grant(admin: Settings, material: SecureMaterial) -> None:
    """The packaged declaration's Kafka ACLs and Redis users for ``admin``'s namespace
    (``admin`` acts as a super user)."""
    import redis
    from confluent_kafka.admin import AdminClient

    from stream.access import kafka_acls, redis_acls
    from stream.access.declaration import load
    from stream.connect import kafka_config
    from stream.connect.redis_pool import make_redis

    declaration = load(namespace=admin.namespace)
    client = AdminClient(kafka_config.admin(admin))
    kafka_acls.apply(kafka_acls.diff(declaration, client, admin.namespace), client)
    r = make_redis(admin, timeout_s=5.0)
    if not isinstance(r, redis.Redis):
        raise InfrastructureError("Redis ACL users are set per node: grant on a standalone Redis")
    redis_acls.apply(redis_acls.diff(declaration, r, material.passwords), r, material.passwords)
    redis_acls.save_if_file(r)  # a restarted Redis reloads its users from its ACL file
