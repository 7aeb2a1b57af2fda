"""Stable entity routing for canaries.

An entity's bucket is a number in [0, 1) derived from a hash of its id, the same in
every worker, process and restart (Python's ``hash`` is salted per process, so it is
not used). Entities whose bucket is below the canary share go to the canary, so a
share of 0.1 sends a fixed tenth of the entities there and an entity never flips
between versions while the share stays put; raising the share only adds entities.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)


def entity_bucket(entity_id: str) -> float:
    """The entity's position in [0, 1), uniform over ids and stable everywhere."""
    digest = hashlib.blake2b(entity_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def to_canary(entity_id: str, share: float) -> bool:
    """Does this entity belong to a canary taking ``share`` of the entities?"""
    return share > 0 and entity_bucket(entity_id) < share
