"""Model control state: what a ModelControl record may say, and how an action changes it.

Pure functions over the decoded record (no Kafka): ``stream.lifecycle.control`` publishes and
follows the records, workers apply them.
"""

from __future__ import annotations

import math
import time
from typing import Any

from schemas.exceptions import StreaminferError

ACTIONS = ("promote", "rollback", "canary", "canary_stop", "shadow", "shadow_stop",
           "auto_rollback", "auto_promote", "rejected")


class TransitionError(StreaminferError):
    """The requested change does not apply to the model's current state."""


def transition(current: dict[str, Any] | None, model: str, action: str, *,
               version: str | None = None, share: float | None = None, reason: str = "",
               actor: str = "cli", at_ms: int | None = None,
               max_psi: float | None = None) -> dict[str, Any]:
    """The next ModelControl record of ``model`` after ``action`` (pure; validates).

    promote V       V becomes active; the old active is kept as previous; a canary of V ends
    rollback        a running canary ends; without one, previous becomes active again
    canary V share  V takes ``share`` (0 < share <= 1) of the entities; judged from now
                    (``max_psi``: the score shift this canary may show, else the workers')
    canary_stop     the canary ends
    shadow V        V scores the active version's requests off the critical path
    shadow_stop     the shadow ends
    auto_rollback   (a worker's canary judge) the canary ends, with the reason
    auto_promote    (a worker's canary judge) the canary becomes active
    rejected        (retraining) V failed its gates: recorded, nothing routed changes
    """
    now = at_ms if at_ms is not None else time.time_ns() // 10**6
    cur = dict(current or {})
    active = cur.get("active_version")
    canary = cur.get("canary_version")
    state: dict[str, Any] = {
        "model": model, "active_version": active, "previous_version": cur.get("previous_version"),
        "action": action, "reason": reason, "actor": actor, "at": now,
        "canary_version": canary, "canary_share": float(cur.get("canary_share") or 0.0),
        "canary_since": cur.get("canary_since"), "shadow_version": cur.get("shadow_version"),
        "canary_max_psi": cur.get("canary_max_psi")}

    def end_canary() -> None:
        state.update(canary_version=None, canary_share=0.0, canary_since=None,
                     canary_max_psi=None)

    if action not in ACTIONS:
        raise TransitionError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
    if action != "promote" and active is None:
        raise TransitionError(f"{model} has no active version yet: promote one first "
                              f"(`streaminfer models promote {model} VERSION`)")
    if action == "promote":
        if not version:
            raise TransitionError("promote needs a version")
        if version != active:
            state.update(active_version=version, previous_version=active)
        if canary == version:
            end_canary()
        if state["shadow_version"] == version:
            state["shadow_version"] = None
    elif action == "rollback":
        if canary is not None:
            end_canary()
        elif not cur.get("previous_version"):
            raise TransitionError(f"{model} has no previous version to roll back to")
        else:
            state.update(active_version=cur["previous_version"], previous_version=active)
    elif action == "canary":
        if not version or share is None or not 0 < share <= 1:
            raise TransitionError(f"canary needs a version and a share in (0, 1], got "
                                  f"{version!r} and {share!r}")
        if version == active:
            raise TransitionError(f"v{version} is already the active version of {model}")
        if max_psi is not None and not (math.isfinite(max_psi) and max_psi > 0):
            raise TransitionError(f"canary max PSI must be a positive number, got {max_psi!r}")
        state.update(canary_version=version, canary_share=float(share), canary_since=now,
                     canary_max_psi=max_psi)
    elif action in ("canary_stop", "auto_rollback"):
        if canary is None:
            raise TransitionError(f"{model} has no canary running")
        end_canary()
    elif action == "auto_promote":
        if canary is None:
            raise TransitionError(f"{model} has no canary running")
        state.update(active_version=canary, previous_version=active)
        end_canary()
    elif action == "rejected":
        if not version:
            raise TransitionError("rejected needs the version that failed its gates")
    elif action == "shadow":
        if not version:
            raise TransitionError("shadow needs a version")
        if version == active:
            raise TransitionError(f"v{version} is already the active version of {model}")
        state["shadow_version"] = version
    else:  # shadow_stop
        if state["shadow_version"] is None:
            raise TransitionError(f"{model} has no shadow version")
        state["shadow_version"] = None
    return state


def control_problem(record: dict[str, Any]) -> str | None:
    """What makes a decoded control record unusable, or None. Workers refuse such a
    record (and keep their current state) instead of acting on it."""
    if not record.get("model"):
        return "no model name"
    if not record.get("active_version"):
        return "no active_version"
    share = record.get("canary_share")
    share = 0.0 if share is None else share
    if not (isinstance(share, int | float) and math.isfinite(share) and 0 <= share <= 1):
        return f"canary_share {share!r} is outside [0, 1]"
    canary = record.get("canary_version")
    if canary is not None:
        if share <= 0:
            return f"canary v{canary} with canary_share {share!r}: a share in (0, 1] is needed"
        if canary == record["active_version"]:
            return f"canary v{canary} is the active version"
    return None
