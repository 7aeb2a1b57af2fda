"""`dev up` after a `dev up` killed mid-start: the containers it left under this dev
cluster's names are removed (else: HTTP 409, name conflict), and nothing else is."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import docker
import pytest

from stream.devcluster import state


class Container:
    def __init__(self, name: str) -> None:
        self.name, self.id, self.removed = name, f"{name}-id-0123456789", False

    def remove(self, force: bool, v: bool) -> None:
        self.removed = force and v


def test_only_this_dev_clusters_unrecorded_containers_are_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mine = [Container("streaminfer-dev-abc123-kafka-1"), Container("streaminfer-dev-abc123-redis")]
    others = [Container("streaminfer-dev-def456-kafka-1"), Container("streaminfer-dev-abc1234-x")]
    asked: list[dict[str, Any]] = []

    def listing(all: bool, filters: dict[str, Any]) -> list[Container]:
        asked.append({"all": all, **filters})
        return mine + others

    client = SimpleNamespace(containers=SimpleNamespace(list=listing))
    monkeypatch.setattr(docker, "from_env", lambda: client)
    removed = state.remove_leftovers("streaminfer-dev-abc123", "io.streaminfer.cluster")
    assert removed == [c.name for c in mine]
    assert all(c.removed for c in mine)
    assert not any(c.removed for c in others)
    assert asked == [{"all": True, "label": "io.streaminfer.cluster"}]
