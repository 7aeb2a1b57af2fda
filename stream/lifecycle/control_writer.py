"""The one write path of the control topic: read, decide and write in one fenced session.

Every writer (``streaminfer models``, retraining, a worker's canary judge) uses the same
transactional id, ``<ns>.control-writer``. ``init_transactions`` fences whoever held it
before: a writer that read the state and had not committed yet fails its produce or
commit (PRODUCER_FENCED) and its open transaction is aborted, so of two writers that
read the same state only one decision commits; the other is read again and decided
again (:func:`update`, up to ``ATTEMPTS`` times). Readers take committed records only
(read_committed) and refuse a record whose seq does not exceed the one they hold
(``processors.control_state.out_of_order``), so a client that writes past this path
changes nothing either. Every step is bounded; nothing here waits without a deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from processors.control_state import TransitionError, control_problem
from schemas.serde import Encoder
from stream.connect import kafka_config
from stream.exceptions import KafkaOperationError
from stream.settings import Settings

log = logging.getLogger(__name__)
ATTEMPTS = 3
TIMEOUT_S = 15.0
TRANSACTION_TIMEOUT_MS = 20_000  # a writer that dies mid-write holds readers this long at most

Decide = Callable[[dict[str, Any] | None], dict[str, Any] | None]


def writer_id(settings: Settings) -> str:
    """The transactional id every control writer of the namespace shares."""
    return f"{settings.namespace}.control-writer"


def mirrored_control_topics(settings: Settings, topics: Any) -> list[str]:
    """Regions whose copies of the control topic MirrorMaker keeps here
    (``<region>.<ns>.models``), found in the cluster's metadata."""
    suffix = f".{settings.namespace}.models"
    return sorted(t[: -len(suffix)] for t in topics if t.endswith(suffix)
                  and "." not in t[: -len(suffix)])


class ControlWriter:
    """One fenced session: the state read inside it, and one decision written."""

    def __init__(self, settings: Settings, timeout_s: float = TIMEOUT_S) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self.producer = Producer({
            **kafka_config.client_producer(settings), "linger.ms": 0,
            "transactional.id": writer_id(settings),
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            "delivery.timeout.ms": min(settings.delivery_timeout_ms, TRANSACTION_TIMEOUT_MS)})
        try:
            self.producer.init_transactions(timeout_s)  # fences the previous session
        except KafkaException as exc:
            raise _failed("start a control write session", exc.args[0]) from exc

    def read(self, model: str) -> dict[str, Any] | None:
        """The model's state now: this region's control topic and its mirrored copies,
        read to their end offsets (after this session fenced the previous writer)."""
        from stream.lifecycle.control import ControlFollower

        follower = ControlFollower(self.settings, self._mirrored())
        try:
            return follower.catch_up(self.timeout_s).get(model)
        finally:
            follower.close()

    def _mirrored(self) -> list[str]:
        topics = self.producer.list_topics(timeout=self.timeout_s).topics
        return mirrored_control_topics(self.settings, topics)

    def write(self, state: dict[str, Any]) -> None:
        """Commit ``state`` (raises KafkaException when this session was fenced)."""
        from stream.lifecycle.control import control_topic

        errors: list[KafkaError] = []
        self.producer.begin_transaction()
        self.producer.produce(control_topic(self.settings), Encoder("ModelControl")(state),
                              state["model"].encode(),
                              on_delivery=lambda err, _m: errors.append(err) if err else None)
        self.producer.flush(self.timeout_s)
        if errors:
            self.producer.abort_transaction(self.timeout_s)
            raise KafkaException(errors[0])
        self.producer.commit_transaction(self.timeout_s)

    def close(self) -> None:
        """Nothing is left queued: a write either committed or raised."""
        self.producer.flush(0)


def update(settings: Settings, model: str, decide: Decide,
           attempts: int = ATTEMPTS) -> dict[str, Any] | None:
    """Read the model's state, ``decide`` the next one (None: nothing to write) and write
    it, all in one fenced session; when another writer came in between, read and decide
    again. Returns the state written (None when ``decide`` chose not to write)."""
    last: KafkaError | None = None
    for attempt in range(1, attempts + 1):
        writer = ControlWriter(settings)
        try:
            state = decide(writer.read(model))
            if state is None:
                return None
            problem = control_problem(state)
            if problem is not None:
                raise TransitionError(f"refusing to publish a control record for {model!r}: "
                                      f"{problem}")
            writer.write(state)
            return state
        except KafkaException as exc:
            last = exc.args[0]
            if not _fenced(last) or attempt == attempts:
                raise _failed(f"write the control record of {model!r}", last) from exc
            log.info("another control writer came in between (%s); reading the state again "
                     "(attempt %d of %d)", last, attempt + 1, attempts)
            time.sleep(0.1 * attempt)
        finally:
            writer.close()
    raise _failed(f"write the control record of {model!r}", last)


def _fenced(err: KafkaError) -> bool:
    return err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                          KafkaError.INVALID_PRODUCER_EPOCH,
                          KafkaError.CONCURRENT_TRANSACTIONS) or err.txn_requires_abort()


def _failed(what: str, err: KafkaError | None) -> KafkaOperationError:
    code = err.code() if err is not None else None
    if code in (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
        return KafkaOperationError(
            f"could not {what}: this principal may not write the control topic ({err}). "
            "Control decisions are written by the release, retrain and worker (canary "
            "judge) principals (`streaminfer acls apply`); nothing changed")
    return KafkaOperationError(f"could not {what} ({err}); is Kafka reachable? Nothing "
                               "changed: run the command again", retriable=True)
