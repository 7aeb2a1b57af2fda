"""One arm (the active version or the canary) scores its share of a batch.

Rows the data plane cannot take as they are come back as ``invalid`` (a dead letter for
each) or ``missing`` (stored features missing: a fallback answers them). The rest are
scored under the arm's circuit breaker; a timeout or a model error fails them all (each
then gets a fallback). With ``guard``, scores outside the model's guardrails (or not
finite) count as failures too, so a canary's garbage never reaches a client.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from processors.arms import Arm, ArmFigures
from processors.exceptions import InferenceError, MissingFeaturesError
from processors.runner import InferenceTimeout

Failure = tuple[str, BaseException | None]  # (fallback reason, cause)


@dataclass
class Scored:
    """What one arm did with its rows, by index in the batch."""

    scores: dict[int, float] = field(default_factory=dict)
    failed: dict[int, Failure] = field(default_factory=dict)
    invalid: dict[int, BaseException] = field(default_factory=dict)
    missing: dict[int, MissingFeaturesError] = field(default_factory=dict)


def score_arm(arm: Arm, idxs: list[int], requests: dict[int, dict[str, Any]],
              figs: ArmFigures, guard: bool, borrowed: set[int] | None = None) -> Scored:
    """Score ``idxs`` with ``arm``, counting into ``figs``. ``borrowed`` rows belong to
    another arm's figures (a canary's rows answered by the active version)."""
    out = Scored()
    if not idxs:
        return out
    matrix, accepted, rejections = arm.dataplane.build([requests[i] for i in idxs])
    for rej in rejections:
        i = idxs[rej.index]
        if isinstance(rej.error, MissingFeaturesError):
            out.missing[i] = rej.error
        else:
            out.invalid[i] = rej.error
    chosen = [idxs[j] for j in accepted]
    if not chosen:
        return out
    own = len(chosen) - len(borrowed.intersection(chosen)) if borrowed else len(chosen)
    if not arm.breaker.allow():
        out.failed = dict.fromkeys(chosen, ("breaker_open", None))
        return out
    started = time.perf_counter()
    try:
        result = arm.dataplane.predict_matrix(matrix)
    except InferenceTimeout as exc:
        arm.breaker.record_failure()
        figs.errors += own
        out.failed = dict.fromkeys(chosen, ("timeout", exc))
        return out
    except InferenceError as exc:
        arm.breaker.record_failure()
        figs.errors += own
        out.failed = dict.fromkeys(chosen, ("model_error", exc))
        return out
    figs.infer_s.append(time.perf_counter() - started)
    arm.breaker.record_success()
    got = dict(zip(chosen, result.tolist(), strict=True))
    if guard:
        meta = arm.dataplane.model.meta
        lo = -math.inf if meta.score_min is None else meta.score_min
        hi = math.inf if meta.score_max is None else meta.score_max
        for i, score in list(got.items()):
            if not (math.isfinite(score) and lo <= score <= hi):
                out.failed[i] = ("guardrail", None)
                del got[i]
        figs.errors += len(out.failed)
    figs.scores.extend(got[i] for i in got if not borrowed or i not in borrowed)
    out.scores = got
    return out
