"""What the worker consumer group looks like right now (for readiness waits and status)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from stream.connect import kafka_config
from stream.settings import Settings


@dataclass(frozen=True)
class GroupView:
    """State, members and how many partitions each member holds."""

    state: str
    assignments: dict[str, int]  # member client id / member id -> partitions held

    @property
    def members(self) -> int:
        """Number of members."""
        return len(self.assignments)

    @property
    def assigned(self) -> int:
        """Partitions assigned across members."""
        return sum(self.assignments.values())


def describe(settings: Settings) -> GroupView:
    """The group as the coordinator describes it ('UNKNOWN' before it exists)."""
    admin = AdminClient({**kafka_config.admin(settings), "log_level": 2})
    try:
        desc = admin.describe_consumer_groups([settings.group])[settings.group].result(5)
    except Exception:  # noqa: BLE001 - the group does not exist yet, or the broker is not reachable
        return GroupView("UNKNOWN", {})
    held = {m.member_id: len(m.assignment.topic_partitions) if m.assignment else 0
            for m in desc.members}
    return GroupView(str(desc.state).rsplit(".", 1)[-1].upper(), held)


def is_serving(view: GroupView, members: int, partitions: int) -> bool:
    """Stable, with ``members`` members holding all ``partitions`` between them, and
    (when there are enough partitions) none of the members idle."""
    return (view.state == "STABLE" and view.members >= members and view.assigned == partitions
            and (partitions < view.members or min(view.assignments.values()) > 0))


def wait_until_serving(settings: Settings, members: int, partitions: int, deadline_s: float,
                       hint: str = "") -> GroupView:
    """Block until the group serves every partition with ``members`` members."""
    end = time.monotonic() + deadline_s
    view = GroupView("UNKNOWN", {})
    while time.monotonic() < end:
        view = describe(settings)
        if is_serving(view, members, partitions):
            return view
        time.sleep(0.3)
    raise TimeoutError(
        f"group {settings.group} not serving after {deadline_s:.0f}s: state {view.state}, "
        f"{view.members}/{members} members holding {view.assigned}/{partitions} partitions"
        + (f"; {hint}" if hint else ""))
