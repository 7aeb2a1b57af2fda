"""Requests arriving twice (failover re-reads, MirrorMaker re-delivery, a redone batch)
get one prediction: the second is suppressed and counted. A request that reuses another's
id with other content is answered (and counted as a conflict): nobody can silence a
request by sending one with its id first."""

from __future__ import annotations

import pytest

from schemas.serde import Encoder
from stream.clients import RequestProducer, synthetic_requests
from stream.connect.topics import ensure_topics
from stream.observability.announcements import announced
from tests.http import metric_total
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import (
    WorkerPool,
    start_collector,
    wait_for_all,
    wait_for_workers,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_a_request_seen_twice_is_answered_once_and_the_duplicate_counted(
        cluster: Endpoints, workers: WorkerPool) -> None:
    settings = make_settings(cluster, dedupe_ttl_s=600)
    ensure_topics(settings)
    collector = start_collector(settings)
    workers.start(settings, "dd0", health_port=0)
    wait_for_workers(settings, workers, 1)
    encode = Encoder("InferenceRequest")
    requests = list(synthetic_requests(500, seed=71))
    records = [(str(r["entity_id"]).encode(), encode(r)) for r in requests]
    producer = RequestProducer(settings)
    for key, value in records:
        producer.send_raw(key, value)
    producer.flush()
    ids = [r["request_id"] for r in requests]
    wait_for_all(collector, ids, deadline_s=60)
    url = announced(settings.group)[0]["metrics_url"]
    for key, value in records:  # the very same records once more
        producer.send_raw(key, value)
    producer.flush()

    def consumed() -> float:
        return metric_total(url, "streaminfer_requests_consumed_total")

    wait_until(lambda: consumed() >= 1000, 60, "the worker to consume the repeated requests")
    assert metric_total(url, "streaminfer_duplicates_suppressed_total") == 500
    with collector.lock:
        answered = [v["request_id"] for t, v, _ in collector.seen
                    if t == settings.predictions_topic]
    assert sorted(answered) == sorted(ids)  # each request once, none missing

    # Someone sends requests with ids another client will use, before that client does.
    victims = [dict(r, request_id=f"victim-{i}") for i, r in
               enumerate(synthetic_requests(20, seed=72))]
    forged = [dict(r, features={**r["features"], "amount": 1.0}) for r in victims]
    for batch in (forged, victims, victims):  # the victims' second send is a true re-send
        for r in batch:
            producer.send_raw(str(r["entity_id"]).encode(), encode(r))
        producer.flush()
    wait_until(lambda: consumed() >= 1060, 60, "the worker to consume the reused ids")
    wait_until(lambda: metric_total(url, "streaminfer_duplicates_suppressed_total") >= 520,
               30, "the victims' re-sends suppressed")
    assert metric_total(url, "streaminfer_request_id_conflicts_total") == 20

    def victim_answers() -> int:
        return sum(1 for v in collector.values(settings.predictions_topic)
                   if v["request_id"].startswith("victim-"))

    wait_until(lambda: victim_answers() >= 40, 30, "answers for the forged and the victims")
    assert victim_answers() == 40  # the forged ones and every victim, once each
