"""`topics ensure` on a real broker."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream.connect.topics import ensure_topics
from stream.exceptions import ConfigurationError
from tests.integration.conftest import Endpoints, make_settings

pytestmark = pytest.mark.integration


def test_ensure_creates_then_reports_existing(cluster: Endpoints) -> None:
    settings = make_settings(cluster, partitions=6)
    first = ensure_topics(settings)
    assert [t.created for t in first] == [True] * 6
    assert {t.name for t in first} == {settings.requests_topic, settings.predictions_topic,
                                       settings.dlq_topic, settings.events_topic,
                                       settings.shadow_topic, f"{settings.namespace}.models"}
    second = ensure_topics(settings)
    assert [t.created for t in second] == [False] * 6
    assert {t.partitions for t in second if not t.name.endswith(".models")} == {6}
    admin_meta = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    control = ConfigResource(ConfigResource.Type.TOPIC, f"{settings.namespace}.models")
    conf = admin_meta.describe_configs([control])[control].result(10)
    assert conf["cleanup.policy"].value == "compact"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    res = ConfigResource(ConfigResource.Type.TOPIC, settings.requests_topic)
    config = admin.describe_configs([res])[res].result(10)
    assert config["min.insync.replicas"].value == "1"


def test_replication_factor_above_broker_count_is_refused(cluster: Endpoints) -> None:
    settings = make_settings(cluster, replication_factor=3, min_insync_replicas=2)
    with pytest.raises(ConfigurationError, match=r"replication_factor 3 .* exceeds the 1 broker"):
        ensure_topics(settings)
