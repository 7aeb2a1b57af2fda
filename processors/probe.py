"""Model health probe: a fixed golden input through the model, checked for output and time.

A model directory may hold ``golden.json``::

    {"inputs": [[...], ...], "expected": [...], "tolerance": 1e-4, "latency_budget_ms": 50}

written by the training script from the exported model. A probe fails when an output
differs from its expected value by more than ``tolerance``, when the call takes longer
than the budget, or when the model raises.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from processors.exceptions import ModelLoadError
from processors.model import OnnxModel


@dataclass(frozen=True)
class Golden:
    """A fixed input batch and the outputs the model must give for it."""

    inputs: np.ndarray
    expected: np.ndarray
    tolerance: float
    latency_budget_ms: float

    @classmethod
    def load(cls, path: Path) -> Golden:
        """Read ``golden.json``; errors name the file."""
        try:
            raw = json.loads(path.read_text())
            inputs = np.asarray(raw["inputs"], dtype=np.float32)
            expected = np.asarray(raw["expected"], dtype=np.float64)
            golden = cls(inputs, expected, float(raw.get("tolerance", 1e-4)),
                         float(raw.get("latency_budget_ms", 50.0)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path}: cannot read the golden probe: {exc}") from exc
        if inputs.ndim != 2 or len(inputs) != len(expected):
            raise ModelLoadError(f"{path}: 'inputs' must be rows matching 'expected' one to one")
        return golden

    @classmethod
    def for_model(cls, model: OnnxModel) -> Golden | None:
        """The golden probe stored next to a model, if any."""
        path = model.source.parent / "golden.json"
        return cls.load(path) if path.exists() else None


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one probe."""

    ok: bool
    reason: Literal["", "output", "latency", "error"]
    detail: str
    seconds: float


def run_probe(model: OnnxModel, golden: Golden) -> ProbeResult:
    """Run the golden batch once and judge it."""
    start = time.perf_counter()
    try:
        got = model.predict(golden.inputs)
    except Exception as exc:  # noqa: BLE001 - any failure of the model is a failed probe, not a crash
        return ProbeResult(False, "error", f"{type(exc).__name__}: {exc}",
                           time.perf_counter() - start)
    seconds = time.perf_counter() - start
    diff = np.abs(np.asarray(got, dtype=np.float64) - golden.expected)
    if got.shape != golden.expected.shape or not np.all(diff <= golden.tolerance):
        worst = float(np.max(diff)) if got.shape == golden.expected.shape else float("nan")
        return ProbeResult(False, "output",
                           f"outputs differ from golden by up to {worst:.3g} "
                           f"(tolerance {golden.tolerance:g})", seconds)
    if seconds * 1000 > golden.latency_budget_ms:
        return ProbeResult(False, "latency", f"probe took {seconds * 1000:.1f} ms, budget "
                           f"{golden.latency_budget_ms:g} ms", seconds)
    return ProbeResult(True, "", "ok", seconds)
