"""Model control state: what a ModelControl record may say, how an action changes it, and
which record a reader holds.

Decisions are ordered by the log, never by their writers' clocks. Every record carries
``seq``: the seq of the state its writer read, plus one. Writers read and write inside
one fenced session (``stream.lifecycle.control_writer``), so of two writers that read
the same state only one commits; a reader still refuses (and logs) a record whose seq
does not exceed the one it holds from the same topic (:func:`out_of_order`), so a stale
write from any other client changes nothing. With regions, each region's topic is a
chain of its own and the held state of a model is the head with the highest
(seq, at, topic) over the chains (:func:`effective`): the same for a worker that read
every record and for one that started after compaction, whatever order it read them in.

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
    seq = int(cur.get("seq") or 0) + 1  # the state this decision was made from, plus one
    active = cur.get("active_version")
    canary = cur.get("canary_version")
    state: dict[str, Any] = {
        "model": model, "active_version": active, "previous_version": cur.get("previous_version"),
        "action": action, "reason": reason, "actor": actor, "at": now,
        "canary_version": canary, "canary_share": float(cur.get("canary_share") or 0.0),
        "canary_since": cur.get("canary_since"), "shadow_version": cur.get("shadow_version"),
        "canary_max_psi": cur.get("canary_max_psi"), "seq": seq}

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


def out_of_order(head: dict[str, Any] | None, record: dict[str, Any]) -> str | None:
    """Why ``record`` does not follow the ``head`` held from the same topic (None: it
    does). A record follows when its seq exceeds the head's: a stale write (made from a
    state older than the head) or a repeat does not. Records without a seq (writers older
    than ModelControl v4) follow only a head without one, in log order."""
    if head is None:
        return None
    seq, held = int(record.get("seq") or 0), int(head.get("seq") or 0)
    if seq == 0 and held == 0:
        return None
    if seq == 0:
        return (f"a record without a sequence number (a client older than ModelControl v4) "
                f"after seq {held}: upgrade the client that wrote it")
    if seq <= held:
        return (f"stale: seq {seq} was decided from seq {seq - 1}, but the state is at seq "
                f"{held} (by {head.get('actor') or '?'}: {head.get('action')}); decide again "
                f"from the current state")
    return None


def effective(heads: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The state a model is held at: of its chains' heads (topic -> record), the one with
    the highest (seq, at, topic); None when there is none."""
    if not heads:
        return None
    topic = max(heads, key=lambda t: (int(heads[t].get("seq") or 0),
                                      int(heads[t].get("at") or 0), t))
    return heads[topic]


class ControlBook:
    """What a reader holds: per model, each topic's head and the effective state.

    ``take`` records in the order their topic's log has them; the result is the same for
    a reader that took every record and for one that took only the latest per topic and
    model (what compaction leaves), in any interleaving of the topics."""

    def __init__(self) -> None:
        self.heads: dict[str, dict[str, dict[str, Any]]] = {}
        self.state: dict[str, dict[str, Any]] = {}

    def take(self, topic: str, record: dict[str, Any]) -> tuple[bool, str | None]:
        """(whether the model's state changed, why the record was refused or None)."""
        model = record["model"]
        chains = self.heads.setdefault(model, {})
        problem = out_of_order(chains.get(topic), record)
        if problem is not None:
            return False, problem
        chains[topic] = record
        held = effective(chains)
        if held is None or held is self.state.get(model):
            return False, None
        self.state[model] = held
        return True, None
