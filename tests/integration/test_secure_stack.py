"""The secure stack on real Kafka and Redis: who is refused, who may do what.

One secure single-broker cluster for the session (``secure_cluster``): SASL_SSL with
SCRAM-SHA-512, the StandardAuthorizer with no ACL meaning no, Redis TLS-only with ACL users
and the default user off. Each test takes a fresh namespace and applies the packaged
declaration (stream/access/access.toml) to it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from stream.connect import kafka_config
from stream.connect.redis_pool import make_redis
from stream.settings import Settings
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    WorkerPool,
    start_collector,
    streaminfer,
    wait_for_all,
    wait_for_workers,
)
from tests.integration.secure_support import SecureCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(secure_cluster: SecureCluster, cluster: Endpoints) -> Settings:
    """A fresh namespace on the secure stack, its topics made and its access applied."""
    from stream.connect.topics import ensure_topics

    s = secure_cluster.as_principal(make_settings(cluster), "admin")
    ensure_topics(s)
    secure_cluster.grant(s)
    return s


def _produce_error(settings: Settings, topic: str) -> KafkaError | None:
    """Produce one record as ``settings``' principal; the delivery error, if any."""
    producer = Producer({**kafka_config.client_producer(settings), "delivery.timeout.ms": 8000})
    errors: list[KafkaError | None] = []
    # Keyed: the control topic is compacted and refuses records without a key.
    producer.produce(topic, b"x", key=b"k", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    assert errors, f"no delivery report for {topic} within 15 s"
    return errors[0]


def _consume_error(settings: Settings, topic: str, group: str) -> KafkaError | None:
    """Join ``group`` and read ``topic`` as ``settings``' principal: the first error, or
    None once the group assigned partitions and the fetch answered without one."""
    conf = {**kafka_config.tail_consumer(settings, group, True), "enable.auto.commit": False}
    consumer = Consumer(conf)
    consumer.subscribe([topic])
    try:
        end = time.monotonic() + 20
        while time.monotonic() < end:
            msg = consumer.poll(0.5)
            err = msg.error() if msg is not None else None
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                return err
            if consumer.assignment() and msg is None:
                return None
        raise AssertionError(f"neither an assignment nor an error for {topic} in 20 s")
    except KafkaException as exc:
        first: KafkaError = exc.args[0]
        return first
    finally:
        consumer.close()


def _denied(err: KafkaError | None) -> bool:
    return err is not None and err.code() in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)


def test_the_secure_stack_comes_up_in_a_time_comparable_to_the_open_one(
        cluster: Endpoints, secure_cluster: SecureCluster) -> None:
    """Printed, not bounded (machines differ): the session's two clusters from nothing to
    answering, the secure one with its CA, certificates, SCRAM users and Redis users."""
    from tests.integration.conftest import STARTUP_S

    if "open" not in STARTUP_S:  # STREAMINFER_TEST_BOOTSTRAP_SERVERS: not started here
        pytest.skip("the open cluster was not started by this session")
    print(f"\nfrom nothing to answering: open stack {STARTUP_S['open']:.1f} s, secure stack "
          f"{STARTUP_S['secure']:.1f} s (one broker and Redis each)")
    from stream.connect.reachability import require_kafka

    admin = secure_cluster.as_principal(make_settings(cluster), "admin")
    assert len(require_kafka(admin).brokers) == 1  # it answers, over SASL_SSL


def test_refused_clients_get_one_clear_line_naming_the_cause(admin: Settings,
                                                             secure_cluster: SecureCluster,
                                                             tmp_path: Any) -> None:
    """Plaintext, TLS without SASL, a wrong password, an unknown user, a wrong CA: each
    command stops within seconds with the cause and the setting to fix (not a timeout)."""
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    other_ca = tmp_path / "other-ca.pem"
    from stream.devcluster.pki import make_ca

    other_ca.write_bytes(make_ca("someone else's CA").cert_pem)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"security_protocol": "PLAINTEXT"}, "its listener expects TLS"),
        ({"security_protocol": "SSL"}, "its listener expects SASL"),
        ({"sasl_password_file": wrong}, "refused the credentials of user 'admin'"),
        ({"sasl_username": "nobody"}, "refused the credentials of user 'nobody'"),
        ({"ssl_ca_location": other_ca}, "certificate could not be verified"),
    ]
    for update, expected in cases:
        started = time.monotonic()
        result = streaminfer(admin.model_copy(update=update), "topics", "list", timeout=60)
        took = time.monotonic() - started
        assert result.returncode == 2, (update, result.stdout, result.stderr)
        assert expected in result.stderr, (update, result.stderr)
        assert "did not answer within" not in result.stderr
        assert took < 15, f"{update}: {took:.1f} s to say why"


def test_each_principal_is_held_to_its_grants(admin: Settings,
                                              secure_cluster: SecureCluster) -> None:
    """The worker cannot write requests or join another group; the producer cannot read
    predictions; only the release operator, retraining and the workers (their canary
    judge) may write the control topic."""
    def as_(p: str) -> Settings:
        return secure_cluster.as_principal(admin, p)

    ns = admin.namespace
    assert _produce_error(as_("producer"), admin.requests_topic) is None
    assert _denied(_produce_error(as_("worker"), admin.requests_topic))
    assert _produce_error(as_("worker"), admin.predictions_topic) is None
    assert _denied(_consume_error(as_("worker"), admin.requests_topic, f"{ns}.someone-else"))
    assert _consume_error(as_("worker"), admin.requests_topic, admin.group) is None
    assert _denied(_consume_error(as_("producer"), admin.predictions_topic, f"{ns}.reader"))
    assert _consume_error(as_("consumer"), admin.predictions_topic, f"{ns}.reader") is None
    control = f"{ns}.models"
    for principal in ("producer", "consumer", "features", "dlq-operator", "mirrormaker"):
        assert _denied(_produce_error(as_(principal), control)), principal
    for principal in ("release", "retrain", "worker"):
        assert _produce_error(as_(principal), control) is None, principal
    # Retraining and MirrorMaker write nothing of the data plane (issue 34, item 10).
    for principal in ("retrain", "mirrormaker"):
        for topic in (admin.requests_topic, admin.predictions_topic, admin.dlq_topic):
            assert _denied(_produce_error(as_(principal), topic)), (principal, topic)
    # Another namespace's topics are out of reach even for the same principal.
    other = make_settings(Endpoints(admin.bootstrap_servers, admin.redis_url, 1))
    from stream.connect.topics import ensure_topics

    ensure_topics(secure_cluster.as_principal(other, "admin"))
    assert _denied(_produce_error(as_("producer"), other.requests_topic))


def test_a_client_certificate_is_a_principal_held_to_the_same_grants(
        admin: Settings, secure_cluster: SecureCluster, tmp_path: Any) -> None:
    """On the certificate listener (mutual TLS) the principal is the certificate's CN:
    the producer's certificate may write requests and not read predictions, the
    consumer's may not write the control topic, the release operator's may. No
    certificate, or one another CA
    signed, is refused with the cause named."""
    def by_cert(p: str) -> Settings:
        return secure_cluster.as_principal(admin, p, certificate=True)

    assert _produce_error(by_cert("producer"), admin.requests_topic) is None
    assert _denied(_consume_error(by_cert("producer"), admin.predictions_topic,
                                  f"{admin.namespace}.reader"))
    assert _denied(_produce_error(by_cert("consumer"), f"{admin.namespace}.models"))
    assert _produce_error(by_cert("release"), f"{admin.namespace}.models") is None
    # A command through the CLI, authenticated by the certificate alone.
    listed = streaminfer(by_cert("admin"), "topics", "list", timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert admin.requests_topic in listed.stdout

    from stream.devcluster import pki

    stranger = pki.issue(pki.make_ca("someone else's CA"), "admin", [], server=False)
    (tmp_path / "s.key").write_bytes(stranger.key_pem)
    (tmp_path / "s.crt").write_bytes(stranger.cert_pem)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ssl_certificate_location": None, "ssl_key_location": None},
         "requires a client certificate"),
        ({"ssl_certificate_location": tmp_path / "s.crt", "ssl_key_location": tmp_path / "s.key"},
         "refused the client certificate"),
    ]
    for update, expected in cases:
        started = time.monotonic()
        result = streaminfer(by_cert("admin").model_copy(update=update), "topics", "list",
                             timeout=60)
        took = time.monotonic() - started
        assert result.returncode == 2, (update, result.stdout, result.stderr)
        assert expected in result.stderr, (update, result.stderr)
        assert took < 15, f"{update}: {took:.1f} s to say why"


def test_redis_refuses_the_default_user_plaintext_and_what_the_worker_may_not_do(
        admin: Settings, secure_cluster: SecureCluster) -> None:
    port = int(admin.redis_url.rsplit(":", 1)[1].split("/")[0])
    ca = str(secure_cluster.stack.material.ca)
    # No user: the default user is off.
    anonymous = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca,
                            socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get(f"{admin.namespace}:fv:x")
    # Plaintext: the plaintext port is off, the TLS port does not speak it.
    plain = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1,
                        username="admin", password=secure_cluster.stack.material.password("admin"))
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    worker: Any = make_redis(secure_cluster.as_principal(admin, "worker"), timeout_s=5.0)
    ns = admin.namespace
    worker.set(f"{ns}:answered:{{r1}}", "1")
    assert worker.get(f"{ns}:answered:{{r1}}") == b"1"
    assert worker.get(f"{ns}:fv:card_activity:{{e1}}") is None  # read allowed
    for forbidden in (lambda: worker.set(f"{ns}:fv:card_activity:{{e1}}", "x"),  # read-only
                      lambda: worker.get(f"other-{uuid.uuid4().hex[:6]}:answered:{{r1}}"),
                      worker.flushall, lambda: worker.keys("*"),
                      lambda: worker.scan(0, match="*"), worker.randomkey,  # key names
                      lambda: worker.config_get("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()


def test_acls_apply_prints_the_difference_changes_only_that_and_is_idempotent(
        admin: Settings, secure_cluster: SecureCluster) -> None:
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    client = AdminClient(kafka_config.admin(admin))
    extra = AclBinding(ResourceType.TOPIC, admin.requests_topic, ResourcePatternType.LITERAL,
                       "User:worker", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
    client.create_acls([extra])[extra].result(15)
    passwords = str(secure_cluster.stack.material.passwords)
    dry = streaminfer(admin, "acls", "apply", "--dry-run", "--passwords-dir", passwords)
    assert dry.returncode == 0, dry.stderr
    assert f"- User:worker may write topic {admin.requests_topic}" in dry.stdout
    assert "1 change(s) would be made" in dry.stderr
    # Drift apply used to miss (issue 34, item 10): an undeclared principal's grant on
    # the namespace, a DENY, a rule limited to a host, a Redis user's second password.
    drift = [
        AclBinding(ResourceType.TOPIC, f"{admin.namespace}.models", ResourcePatternType.LITERAL,
                   "User:mallory", "*", AclOperation.WRITE, AclPermissionType.ALLOW),
        AclBinding(ResourceType.TOPIC, admin.predictions_topic, ResourcePatternType.LITERAL,
                   "User:consumer", "*", AclOperation.READ, AclPermissionType.DENY),
        AclBinding(ResourceType.GROUP, f"{admin.namespace}.", ResourcePatternType.PREFIXED,
                   "User:consumer", "10.9.8.7", AclOperation.DELETE, AclPermissionType.ALLOW)]
    for fut in client.create_acls(drift).values():
        fut.result(15)
    redis_admin: Any = make_redis(admin, timeout_s=5.0)
    redis_admin.execute_command("ACL", "SETUSER", "worker", ">a-second-password")
    check = streaminfer(admin, "acls", "apply", "--check", "--passwords-dir", passwords)
    assert check.returncode == 1, (check.stdout, check.stderr)
    for line in (f"- User:mallory may write topic {admin.namespace}.models",
                 f"- User:consumer is DENIED to read topic {admin.predictions_topic}",
                 f"- User:consumer may delete group {admin.namespace}. (prefixed) from host "
                 "10.9.8.7 only",
                 "~ Redis user worker: 1 extra password(s)"):
        assert line in check.stdout, (line, check.stdout)
    assert "drift: 5 difference(s)" in check.stderr
    applied = streaminfer(admin, "acls", "apply", "--passwords-dir", passwords)
    assert applied.returncode == 0, applied.stderr
    assert "5 change(s) made" in applied.stderr
    clean = streaminfer(admin, "acls", "apply", "--check", "--passwords-dir", passwords)
    assert clean.returncode == 0, clean.stdout
    assert "no drift" in clean.stderr
    again = streaminfer(admin, "acls", "apply", "--passwords-dir", passwords)
    assert again.returncode == 0, again.stderr
    assert "nothing to change" in again.stderr
    assert _denied(_produce_error(secure_cluster.as_principal(admin, "worker"),
                                  admin.requests_topic))
    # Applying another namespace's access leaves this one's grants alone.
    from stream.connect.topics import ensure_topics

    other = secure_cluster.as_principal(
        make_settings(Endpoints(admin.bootstrap_servers, admin.redis_url, 1)), "admin")
    ensure_topics(other)
    secure_cluster.grant(other)
    assert _produce_error(secure_cluster.as_principal(admin, "producer"),
                          admin.requests_topic) is None
    assert _produce_error(secure_cluster.as_principal(other, "producer"),
                          other.requests_topic) is None


def test_a_forged_replay_marker_buys_nothing_a_signed_one_is_answered_however_late(
        admin: Settings, secure_cluster: SecureCluster, workers: WorkerPool,
        tmp_path: Any) -> None:
    """The producer principal may write requests, and so a replay header; without the DLQ
    operator's signature it gets the deadline fallback like any late request. The DLQ
    operator's signed replay of a request just as late is answered by the model."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from processors.registry.signing import generate, load_private
    from processors.replay_marker import ATTEMPT, REPLAY_OF, REPLAY_SIG, sign_marker
    from schemas.serde import Encoder
    from stream.clients import RequestProducer, now_ms, synthetic_requests

    generate(tmp_path / "dlq.key", tmp_path / "dlq.pub")
    operator = load_private(tmp_path / "dlq.key")
    collector = start_collector(admin)
    workers.start(secure_cluster.as_principal(admin, "worker"), "rp0",
                  replay_trusted_keys=str(tmp_path / "dlq.pub"))
    wait_for_workers(admin, workers, 1)
    encode = Encoder("InferenceRequest")
    late = list(synthetic_requests(3, seed=71))
    for r in late:
        r["deadline_ms"] = now_ms() - 60_000
    coordinate = f"{admin.dlq_topic}:0:7".encode()

    def send(as_: str, req: dict[str, Any], signer: Ed25519PrivateKey | None) -> None:
        key, value = str(req["entity_id"]).encode(), encode(req)
        headers: list[tuple[str, bytes | None]] = [(REPLAY_OF, coordinate), (ATTEMPT, b"2")]
        if signer is not None:
            headers.append((REPLAY_SIG, sign_marker(signer, coordinate, b"2", key, value)))
        producer = RequestProducer(secure_cluster.as_principal(admin, as_))
        producer.send_raw(key, value, headers=headers)
        producer.flush(15)

    send("producer", late[0], None)                           # forged: no signature
    send("producer", late[1], Ed25519PrivateKey.generate())   # forged: the wrong key
    send("dlq-operator", late[2], operator)                   # the operator's replay
    ids = [r["request_id"] for r in late]
    wait_for_all(collector, ids, deadline_s=60)
    by_id = {v["request_id"]: v for v in collector.values(admin.predictions_topic)}
    assert by_id[ids[0]]["fallback_reason"] == "deadline"
    assert by_id[ids[1]]["fallback_reason"] == "deadline"
    assert by_id[ids[2]]["fallback"] is False

