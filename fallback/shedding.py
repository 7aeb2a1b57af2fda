"""Load shedding: under overload, low-priority requests get a fallback instead of the model.

Off unless ``max_lag`` is set. A request is shed when its partition's lag (records
behind the end) exceeds ``max_lag`` and its priority is below ``min_priority``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadShedder:
    """Decides per request; cheap enough to call for every one."""

    max_lag: int | None = None
    min_priority: int = 1

    def shed(self, lag: int, priority: int) -> bool:
        """True when this request should be answered by a fallback (reason shed_load)."""
        return self.max_lag is not None and lag > self.max_lag and priority < self.min_priority
