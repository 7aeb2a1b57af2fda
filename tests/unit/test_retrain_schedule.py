"""Retraining under a CronJob resumes instead of starting over, old runs are removed, and
the drift trigger looks at the newest snapshots (issue 34, items 15 and 16)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors.retrain.drift import write_reference
from stream.exceptions import ConfigurationError
from stream.retrain import triggers
from stream.retrain.job import Active, prune_runs, scheduled_end_ms
from stream.settings import Settings


def test_a_cronjobs_job_name_pins_the_window_for_every_retry() -> None:
    """A retried pod of the same Job ends its window at the scheduled time, not at "now":
    same data digest, same run id, so it resumes from the checkpoints."""
    minutes = 29_512_345
    assert scheduled_end_ms(f"retrain-fraud-{minutes}") == minutes * 60_000
    assert scheduled_end_ms(None) is None
    for bad in ("retrain-fraud", "12345", "retrain-fraud-12a"):
        with pytest.raises(ConfigurationError, match="--until-ms"):
            scheduled_end_ms(bad)


def test_run_directories_past_the_retention_are_removed_but_the_current_one(
        tmp_path: Path) -> None:
    now = time.time()
    for name, age_h in (("old", 200), ("older", 500), ("fresh", 1), ("current", 300)):
        run = tmp_path / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "epoch-1.pkl").write_bytes(b"x")
        for path in (run, run / "checkpoints", run / "checkpoints" / "epoch-1.pkl"):
            os.utime(path, (now - age_h * 3600, now - age_h * 3600))
    # A resumed run wrote a checkpoint an hour ago: it is not old, whatever its folder says.
    os.utime(tmp_path / "old" / "checkpoints" / "epoch-1.pkl", (now - 3600, now - 3600))
    removed = prune_runs(tmp_path, 168 * 3600, keep=tmp_path / "current", now=now)
    assert [p.name for p in removed] == ["older"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "fresh", "old"]


def test_the_drift_trigger_samples_the_newest_snapshots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drift that starts after the first 5,000 snapshots since the last run was never
    seen: the trigger sampled the oldest ones."""
    rng = np.random.default_rng(3)
    features = ["amount"]
    write_reference(tmp_path, rng.normal(0, 1, (5000, 1)), rng.uniform(0, 1, 5000), features)
    values = rng.normal(0, 1, 8000)
    calm: list[dict[str, Any]] = [
        {"model": "fraud", "fallback": False, "features": {"amount": float(v)},
         "score": float(s)} for v, s in zip(values, rng.uniform(0, 1, 8000), strict=True)]
    moved = [{**r, "features": {"amount": float(v) + 4.0}}
             for r, v in zip(calm[:5000], values[:5000], strict=True)]
    asked: list[int] = []

    def snapshots(_s: Settings, _topic: str, _kind: str, _bad: dict[str, int],
                  since_ms: int = 0, **_kw: Any) -> Any:
        asked.append(since_ms)
        yield from calm + moved

    monkeypatch.setattr(triggers, "read_records", snapshots)
    now = 10 * 3_600_000
    found = triggers.live_drift(Settings(), "fraud", since_ms=0, active=Active("1", tmp_path),
                                now_ms=now)
    assert found is not None
    psi, feature = found
    assert feature == "amount"
    assert psi > 1.0
    assert asked == [now - triggers.DRIFT_WINDOW_MS]  # not the whole history since the run
