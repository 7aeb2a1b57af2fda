"""A soak's releases: a canary started and promoted, and a retraining run released,
while the faults go on (a Redis failover during a canary is a seam, not two features).

The workers serve ``fraud`` from a registry of the soak's own (v1 active, v2 the same
model under a new version); at set shares of the soak's duration the release operator
starts v2 as a canary, then promotes it, and then a retraining run (labels synthesized
from the recorded inputs, `streaminfer retrain`'s own code) trains, gates, publishes and
releases its candidate as a canary. Each decision goes through the control writer's
fenced session and is retried while a fault refuses it. The checker then judges every
answer's version against the control topic's history: active or canary at its time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from stream.clients import now_ms
from stream.devcluster.progress import say
from stream.settings import Settings

MODEL = "fraud"
# (what, share of the soak's duration at which it starts)
STEPS: tuple[tuple[str, float], ...] = (("canary", 0.2), ("promote", 0.4), ("retrain", 0.6))
# The labels come from a world moved toward a later fraud pattern (as in the retraining
# tests), so the retrained candidate beats the served version on the holdout and passes
# its gates; with no drift it would only match it, and the gates reject a tie.
DRIFT = 0.8


def prepare(settings: Settings, run_dir: Path) -> dict[str, Any]:
    """The soak's registry (v1 and v2 of the configured model: the shipped one, or the
    production profile's, which declares sensitive features) with v1 promoted; returns
    the settings the workers and the release steps need."""
    from processors.registry.directory import DirectoryRegistry
    from stream.lifecycle.control import publish_control

    root = run_dir / "registry"
    registry = DirectoryRegistry(root)
    for version in ("1", "2"):
        registry.publish(settings.model_dir, MODEL, version, {"source": "soak"})
    update = {"registry_dir": root, "registry_model": MODEL, "record_inputs": True,
              "retrain_dir": run_dir / "retrain"}
    publish_control(settings.model_copy(update=update), MODEL, "1", "promote",
                    reason="soak baseline", actor="soak")
    return update


def retraining_gap(settings: Settings) -> str | None:
    """Why a retraining run cannot train on this soak's recorded inputs (None: it can).
    Workers never record a model's sensitive features in clear: with field keys they seal
    them into each snapshot (the retraining job opens them), without keys they leave them
    out, and a model that declares some cannot be retrained from what is left."""
    from stream.connect.field_keys import key_source, model_sensitive_features

    declared = model_sensitive_features(settings)
    if declared is None or key_source(settings) is not None:
        return None
    return (f"the model declares sensitive features {sorted(declared[1])} and there are no "
            f"field keys: workers leave them out of {settings.inputs_topic}, and retraining "
            "needs them (--field-keys-file)")


class Releases(threading.Thread):
    """Runs :data:`STEPS` from ``start`` (monotonic) over ``duration_s``; ``steps`` leaves
    some out (a retraining run the recorded inputs cannot feed)."""

    def __init__(self, release: Settings, retrain: Settings, operator: Settings,
                 start: float, duration_s: float, retry_s: float = 120.0,
                 steps: tuple[str, ...] = ("canary", "promote", "retrain")) -> None:
        super().__init__(name="soak-releases", daemon=True)
        self.release, self.retrain, self.operator = release, retrain, operator
        self.start_at, self.duration_s, self.retry_s = start, duration_s, retry_s
        self.steps = steps
        self.since_ms = now_ms()
        self.notes: list[str] = []
        self.problems: list[str] = []
        self.done: list[str] = []
        self._halt = threading.Event()

    def note(self, text: str) -> None:
        """Record and show one release step."""
        self.notes.append(text)
        say(f"  release: {text}")

    def stop(self) -> None:
        """Stop before the next step."""
        self._halt.set()

    def run(self) -> None:
        for step, share in [(s, share) for s, share in STEPS if s in self.steps]:
            if self._halt.wait(max(0.0, self.start_at + share * self.duration_s
                                   - time.monotonic())):
                self.problems.append(f"the soak ended before the release step {step!r}")
                return
            self._retried(step)

    def _retried(self, step: str) -> None:
        """One step, tried again (a broker fault may refuse it) for ``retry_s``."""
        end = time.monotonic() + self.retry_s
        while True:
            try:
                getattr(self, f"_{step}")()
                self.done.append(step)
                return
            except Exception as exc:  # noqa: BLE001 - retried, then the soak's problem
                if time.monotonic() > end or self._halt.is_set():
                    self.problems.append(f"release step {step!r} failed: "
                                         f"{type(exc).__name__}: {exc}")
                    return
                say(f"  release: {step} refused ({type(exc).__name__}: {exc}); again in 5 s")
                time.sleep(5.0)

    def _canary(self) -> None:
        from stream.lifecycle.control import change

        state = change(self.release, MODEL, "canary", version="2", share=0.2,
                       reason="soak: canary during faults", actor="soak-release")
        self.note(f"canary v2 at 20% (active v{state.get('active_version')})")

    def _promote(self) -> None:
        from stream.lifecycle.control import change, current_state

        state = current_state(self.release, MODEL) or {}
        if state.get("active_version") == "2":
            self.note(f"v2 already active ({state.get('action')} by {state.get('actor')})")
            return
        state = change(self.release, MODEL, "promote", version="2",
                       reason="soak: promote during faults", actor="soak-release")
        self.note(f"promoted v2 (active v{state.get('active_version')})")

    def _retrain(self) -> None:
        from stream.retrain.job import retrain_once
        from stream.retrain.labeller import synthesize

        counts = synthesize(self.operator, drift=DRIFT, seed=38, since_ms=self.since_ms)
        self.note(f"labels synthesized from the recorded inputs: {counts}")
        lines: list[str] = []
        outcome = retrain_once(self.retrain, MODEL, say=lines.append, trigger="soak")
        release = (outcome.report.get("release") or {}).get("detail", "")
        self.note(f"retraining run {outcome.run_id}: {outcome.decision}"
                  + (f"; {release}" if release else ""))
        if outcome.decision != "candidate" or not release:
            # judged, not retried: another run would judge the same data the same way
            self.problems.append(f"the retraining run released nothing ({outcome.decision}: "
                                 f"{outcome.report.get('reason', '')}); its last lines: "
                                 f"{' | '.join(lines[-3:])}")
