"""`topics ensure` on a real broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream.connect.topics import ensure_topics
from stream.exceptions import ConfigurationError
from stream.settings import Settings
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import streaminfer

pytestmark = pytest.mark.integration


def test_ensure_creates_then_reports_existing(cluster: Endpoints) -> None:
    settings = make_settings(cluster, partitions=6)
    first = ensure_topics(settings)
    assert [t.created for t in first] == [True] * 8
    assert {t.name for t in first} == {settings.requests_topic, settings.predictions_topic,
                                       settings.dlq_topic, settings.events_topic,
                                       settings.shadow_topic, settings.feedback_topic,
                                       settings.inputs_topic, f"{settings.namespace}.models"}
    second = ensure_topics(settings)
    assert [t.created for t in second] == [False] * 8
    assert {t.partitions for t in second if not t.name.endswith(".models")} == {6}
    admin_meta = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    control = ConfigResource(ConfigResource.Type.TOPIC, f"{settings.namespace}.models")
    conf = admin_meta.describe_configs([control])[control].result(10)
    assert conf["cleanup.policy"].value == "compact"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.requests_topic)
    config = admin.describe_configs([res])[res].result(10)
    assert config["min.insync.replicas"].value == "1"
    for topic in (settings.inputs_topic, settings.feedback_topic):  # training data: time-limited
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        retention = admin.describe_configs([res])[res].result(10)["retention.ms"].value
        assert retention == str(int(settings.inputs_retention_h * 3_600_000))


def test_replication_factor_above_broker_count_is_refused(cluster: Endpoints) -> None:
    settings = make_settings(cluster, replication_factor=3, min_insync_replicas=2)
    with pytest.raises(ConfigurationError, match=r"replication_factor 3 .* exceeds the 1 broker"):
        ensure_topics(settings)


def test_a_misspelt_topic_or_namespace_is_named_with_the_ones_that_exist(
        settings: Settings) -> None:
    typo = streaminfer(settings, "consume", "--topic", "predictons", "--timeout", "1")
    assert typo.returncode == 2, typo.stderr
    assert f"topic predictons does not exist at {settings.bootstrap_servers}" in typo.stderr
    assert "predictions" in typo.stderr
    assert "requests" in typo.stderr  # the namespace's real topics are listed
    nowhere = settings.model_copy(update={"namespace": "no-such-namespace"})
    for command in (["status"], ["consume"], ["dlq", "inspect"]):
        done = streaminfer(nowhere, *command)
        assert done.returncode == 2, (command, done.stderr)
        assert "no-such-namespace" in done.stderr
        assert "Traceback" not in done.stderr
        if command == ["status"]:
            assert settings.namespace in done.stderr  # the namespaces that do exist are named
            assert "topics ensure" in done.stderr


def test_topics_list_shows_the_namespace_and_names_the_others(settings: Settings) -> None:
    done = streaminfer(settings, "topics", "list")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines()]
    assert settings.requests_topic in listed
    assert settings.predictions_topic in listed
    assert all(name.startswith(f"{settings.namespace}.") for name in listed)
    assert "partitions=" in done.stdout
