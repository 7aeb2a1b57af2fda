"""Where a worker serves: a part handed to the worker, not a subclass of it.

:class:`SingleCluster` serves the one cluster the settings name. The region policy
(:class:`stream.regions.policy.FollowRegions`) serves the first healthy region and moves
between regions; the worker asks its placement between batches whether to leave, and
hands control to :meth:`Placement.move` when it should.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from stream.settings import Settings

if TYPE_CHECKING:
    from stream.worker.loop import Worker


class Placement(Protocol):
    """The worker's questions about where it serves."""

    settings: Settings  # the settings of where the worker serves now
    static_membership_allowed: bool

    def subscription(self) -> list[str]:
        """What the consumer subscribes to (topic names or ``^regex``)."""

    def consumer_extras(self) -> dict[str, Any]:
        """librdkafka properties the consumer needs here."""

    def mirrored_from(self) -> list[str]:
        """Other regions whose replicated topics the worker also reads."""

    def should_leave(self) -> bool:
        """Between batches: stop serving here (a move is due)."""

    def should_abandon(self) -> bool:
        """Kafka here is given up for dead: stop waiting on it, commit nothing."""

    def attach(self, worker: Worker) -> None:
        """The worker is built: start watching, set metrics."""

    def move(self, worker: Worker) -> bool:
        """Carry out the due move (clients are closed); True when the worker should serve
        again (at its new place), False when there was nothing to do."""

    def close(self) -> None:
        """The worker stops."""


class SingleCluster:
    """Serve where the settings point; never move."""

    static_membership_allowed = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def subscription(self) -> list[str]:
        return [self.settings.requests_topic]

    def consumer_extras(self) -> dict[str, Any]:
        return {}

    def mirrored_from(self) -> list[str]:
        return []

    def should_leave(self) -> bool:
        return False

    def should_abandon(self) -> bool:
        return False

    def attach(self, worker: Worker) -> None:
        del worker

    def move(self, worker: Worker) -> bool:
        del worker
        return False

    def close(self) -> None:
        """Nothing to stop."""
