"""Train a candidate (scikit-learn: a standard scaler and an MLP), checkpointing after
every epoch so a killed run resumes where it stopped.

The checkpoint is the fitted scaler and the classifier with its optimiser state, pickled
into the run's own directory (written atomically: a file replaced whole, never half
written), tagged with the training spec and the dataset's digest: a checkpoint from other
data or settings is ignored, not resumed. Each epoch's shuffle is seeded by
(seed, epoch), and the MLP shuffles nothing itself, so a resumed run takes exactly the
steps an uninterrupted one would and ends with the same weights.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

CHECKPOINT = "training.ckpt"


@dataclass(frozen=True)
class TrainSpec:
    """How a candidate is trained (part of the run's identity)."""

    hidden: tuple[int, ...] = (32, 16)
    epochs: int = 20
    seed: int = 7
    batch: int = 256
    learning_rate: float = 3e-3
    alpha: float = 1e-4


Progress = Callable[[int, int, bool], None]  # (epoch done, epochs, resumed)


def train(x: np.ndarray, y: np.ndarray, spec: TrainSpec, run_dir: Path, data_digest: str,
          progress: Progress | None = None) -> Pipeline:
    """The fitted pipeline (scaler + MLP), resuming from ``run_dir``'s checkpoint."""
    tag = {"spec": asdict(spec), "data": data_digest}
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _load(run_dir / CHECKPOINT, tag)
    resumed = state is not None
    if state is None:
        scaler = StandardScaler().fit(x.astype(np.float64))
        clf = MLPClassifier(hidden_layer_sizes=spec.hidden, learning_rate_init=spec.learning_rate,
                            alpha=spec.alpha, random_state=spec.seed, shuffle=False)
        state = {"tag": tag, "epoch": 0, "scaler": scaler, "clf": clf}
    scaler, clf = state["scaler"], state["clf"]
    xs = scaler.transform(x.astype(np.float64))
    for epoch in range(state["epoch"], spec.epochs):
        order = np.random.default_rng([spec.seed, epoch]).permutation(len(y))
        for start in range(0, len(y), spec.batch):
            rows = order[start:start + spec.batch]
            clf.partial_fit(xs[rows], y[rows], classes=[0, 1])
        state["epoch"] = epoch + 1
        _save(run_dir / CHECKPOINT, state)
        if progress is not None:
            progress(epoch + 1, spec.epochs, resumed)
    return Pipeline([("scale", scaler), ("mlp", clf)])


def checkpoint_epoch(run_dir: Path) -> int:
    """Epochs the run's checkpoint holds (0 when there is none)."""
    state = _load(run_dir / CHECKPOINT, None)
    return 0 if state is None else int(state["epoch"])


def _load(path: Path, tag: dict[str, Any] | None) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        with path.open("rb") as fh:
            # Our own file, in the run directory this job created; never one from elsewhere.
            state: dict[str, Any] = pickle.load(fh)  # noqa: S301
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
        return None  # unreadable: start over rather than resume from a guess
    if tag is not None and state.get("tag") != tag:
        return None
    return state


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
