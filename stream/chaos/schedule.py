"""A soak's fault schedule, drawn from a seed (pure: the same seed, the same schedule).

Jepsen's nemesis strikes on a schedule rather than one fault per run: faults come at
random gaps, one at a time or two together (the second struck while the first still
holds: a broker kill during a rolling restart, a worker frozen while the controller
moves). The schedule names catalogue faults only; what the target cannot take is left
out before drawing, so a schedule depends on the seed and on the target's shape.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# Pairs that happen in production and stress a seam: the second fault strikes while the
# first still holds. Only pairs whose members the target can take are drawn.
COMBINATIONS: tuple[tuple[str, str], ...] = (
    ("rolling-restart", "leader-kill"),  # a broker dies while another restarts
    ("controller-kill", "zombie-worker"),  # a worker freezes while the controller moves
    ("redis-failover", "worker-kill"),  # a worker restarts onto a Redis mid-failover
    ("broker-pause", "redis-pause"),  # both stores slow at once
    ("leader-kill", "worker-kill"),  # the group and the partition leaders move together
)

# How long after the first fault the second strikes (seconds).
COMBINED_LAG_S = (2.0, 6.0)


@dataclass(frozen=True)
class Strike:
    """One entry: ``faults`` (one, or two struck ``lag_s`` apart) no earlier than ``at_s``
    after the soak's baseline; the run waits for the previous strike to settle first, so
    ``at_s`` is a floor, and each strike's recovery is measured on its own."""

    at_s: float
    faults: tuple[str, ...]
    lag_s: float = 0.0

    @property
    def label(self) -> str:
        """``a`` or ``a + b (after 3.2 s)``."""
        if len(self.faults) == 1:
            return self.faults[0]
        return f"{self.faults[0]} + {self.faults[1]} (after {self.lag_s:.1f}s)"


def draw(seed: int, duration_s: float, available: Sequence[str], gap_s: tuple[float, float],
         combination_share: float = 0.25, est_s: float = 45.0) -> list[Strike]:
    """Strikes filling ``duration_s``: gaps drawn from ``gap_s``, each fault from
    ``available`` (every one at least once before any repeats, in a shuffled order, so a
    short soak still covers the catalogue), and with probability ``combination_share`` a
    combination instead (when one fits ``available``). ``est_s``: what a strike is assumed
    to last (fault, heal, settling) when placing the next one."""
    if not available:
        return []
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    pairs = [p for p in COMBINATIONS if p[0] in available and p[1] in available]
    bag: list[str] = []
    out: list[Strike] = []
    at = rng.uniform(*gap_s)
    while at + est_s <= duration_s:
        if pairs and rng.random() < combination_share:
            first, second = pairs[rng.randrange(len(pairs))]
            out.append(Strike(round(at, 1), (first, second),
                              round(rng.uniform(*COMBINED_LAG_S), 1)))
        else:
            if not bag:
                bag = list(available)
                rng.shuffle(bag)
            out.append(Strike(round(at, 1), (bag.pop(),)))
        at += est_s + rng.uniform(*gap_s)
    return out
