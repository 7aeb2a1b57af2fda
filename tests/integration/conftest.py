"""Integration fixtures: a real Kafka (KRaft) and Redis, started once per session.

The cluster comes from the project's own builders (stream.devcluster) through
testcontainers. To run against an existing cluster instead, set
STREAMINFER_TEST_BOOTSTRAP_SERVERS (and STREAMINFER_TEST_REDIS_URL).
Each test gets its own namespace, hence its own topics and consumer group.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream.connect.topics import ensure_topics
from stream.devcluster.images import Images
from stream.settings import Settings
from tests.integration.helpers import WorkerPool, stop_collectors
from tests.integration.secure_support import SecureCluster


@dataclass(frozen=True)
class Endpoints:
    """How to reach the test cluster."""

    bootstrap_servers: str
    redis_url: str
    brokers: int


@pytest.fixture(scope="session")
def cluster() -> Iterator[Endpoints]:
    """One single-broker Kafka and one Redis for the whole session."""
    existing = os.environ.get("STREAMINFER_TEST_BOOTSTRAP_SERVERS")
    if existing:
        yield Endpoints(existing, os.environ.get("STREAMINFER_TEST_REDIS_URL",
                                                 "redis://127.0.0.1:6379/0"), 1)
        return
    from stream.devcluster.cluster import start_cluster
    from stream.devcluster.engine import stop_engine_we_started

    images = ensure_test_images()
    started = time.monotonic()
    running = start_cluster(1, images.kafka, images.redis)
    STARTUP_S["open"] = time.monotonic() - started
    try:
        yield Endpoints(running.bootstrap_servers, running.redis_url, running.brokers)
    finally:
        running.stop()
        if ENGINE_STARTED:
            stop_engine_we_started()


ENGINE_STARTED = False
# Seconds from nothing to a cluster that answers, per stack (the session's fixtures).
STARTUP_S: dict[str, float] = {}


@pytest.fixture(scope="session")
def secure_cluster(cluster: Endpoints) -> Iterator[SecureCluster]:
    """The secure stack (SASL_SSL/SCRAM, ACLs, TLS-only Redis with ACL users), started on
    first use and shared by the session (after ``cluster``, so the engine outlives it)."""
    from tests.integration.secure_support import start_secure

    images = ensure_test_images()
    started = time.monotonic()
    secure = start_secure(images.kafka, images.redis)
    STARTUP_S["secure"] = time.monotonic() - started
    try:
        yield secure
    finally:
        secure.stop()


@pytest.fixture(params=["open", "secure"])
def stack(request: pytest.FixtureRequest, cluster: Endpoints) -> Stack:
    """Run a test on the open stack and on the secure one (principals as declared)."""
    if request.param == "open":
        return Stack(cluster, None)
    return Stack(cluster, request.getfixturevalue("secure_cluster"))


@dataclass(frozen=True)
class Stack:
    """Settings for one test on the open or the secure stack."""

    cluster: Endpoints
    secure: SecureCluster | None

    def settings(self, **overrides: object) -> Settings:
        """A fresh namespace with its topics (on the secure stack: as admin, with the
        declaration's ACLs and Redis users for it)."""
        s = make_settings(self.cluster, **overrides)
        if self.secure is not None:
            s = self.secure.as_principal(s, "admin")
            ensure_topics(s)
            self.secure.grant(s)
        else:
            ensure_topics(s)
        return s

    def acting_as(self, s: Settings, principal: str) -> Settings:
        """``s`` as ``principal`` on the secure stack; ``s`` itself on the open one."""
        return s if self.secure is None else self.secure.as_principal(s, principal)


def ensure_test_images() -> Images:
    """Docker engine up and the test images built (once per session)."""
    global ENGINE_STARTED
    from stream.devcluster.engine import ensure_engine
    from stream.devcluster.images import ensure_images

    ENGINE_STARTED = ensure_engine() or ENGINE_STARTED
    return ensure_images(
        os.environ.get("STREAMINFER_TEST_KAFKA_IMAGE", "streaminfer/kafka:4.4.0"),
        os.environ.get("STREAMINFER_TEST_REDIS_IMAGE", "streaminfer/redis:7"))


def make_settings(cluster: Endpoints, **overrides: object) -> Settings:
    """Settings for a fresh namespace on the test cluster, tuned for fast failure detection."""
    values: dict[str, object] = {
        "bootstrap_servers": cluster.bootstrap_servers,
        "redis_url": cluster.redis_url,
        "namespace": f"it-{uuid.uuid4().hex[:10]}",
        "partitions": 4,
        "replication_factor": 1,
        "min_insync_replicas": 1,
        "session_timeout_ms": 6000,
        "transaction_timeout_ms": 10_000,
        "batch_max_records": 200,
        "batch_max_linger_ms": 20,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(cluster: Endpoints) -> Settings:
    """A fresh namespace with its topics created."""
    s = make_settings(cluster)
    ensure_topics(s)
    return s


@pytest.fixture
def workers(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WorkerPool]:
    """Worker processes started by the test; all are stopped (by pid) at the end."""
    pool = WorkerPool(tmp_path)
    try:
        yield pool
    finally:
        stop_collectors()
        pool.stop_all()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            pool.dump_logs()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report so fixtures can print worker logs of failed tests."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def own_redis() -> Iterator[tuple[Any, int]]:
    """A Redis of the test's own (to pause or stop) and its host port."""
    from stream.devcluster.cluster import free_port, start_redis

    port = free_port()
    container, _url = start_redis(ensure_test_images().redis, port, label="test-redis")
    try:
        yield container, port
    finally:
        container.stop()


@pytest.fixture
def regions(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    """East and west with MirrorMaker 2 between them, for one test; parametrised
    indirectly with "secure", both regions are secure clusters and MirrorMaker runs as
    its own principal."""
    import shutil
    import tempfile

    from stream.devcluster.images import ensure_mirrormaker_image
    from stream.devcluster.regions import start_regions
    from stream.devcluster.secure import SecureStack

    images = ensure_test_images()
    mm2 = ensure_mirrormaker_image()
    namespace = f"rg-{uuid.uuid4().hex[:8]}"
    stack = None
    if getattr(request, "param", "open") == "secure":
        root = Path(tempfile.mkdtemp(prefix="streaminfer-secure-regions-"))
        stack = SecureStack.create(root, namespace, ["east-", "west-"])
    running = start_regions(1, images.kafka, images.redis, mm2, namespace, secure=stack)
    try:
        yield running, namespace
    finally:
        running.stop()
        if stack is not None:
            shutil.rmtree(stack.material.root, ignore_errors=True)
