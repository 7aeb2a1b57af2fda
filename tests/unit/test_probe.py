"""The golden-input model probe."""

from __future__ import annotations

import dataclasses

import numpy as np

from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.probe import Golden, run_probe


def test_reference_model_passes_its_golden_probe() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    golden = Golden.for_model(model)
    assert golden is not None
    assert len(golden.inputs) == 8
    result = run_probe(model, golden)
    assert result.ok
    assert result.reason == ""


def test_changed_outputs_fail_the_probe() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    golden = Golden.for_model(model)
    assert golden is not None
    wrong = dataclasses.replace(golden, expected=golden.expected + 0.01)
    result = run_probe(model, wrong)
    assert not result.ok
    assert result.reason == "output"
    assert "tolerance" in result.detail


def test_over_budget_fails_the_probe() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    golden = Golden.for_model(model)
    assert golden is not None
    result = run_probe(model, dataclasses.replace(golden, latency_budget_ms=0.0))
    assert not result.ok
    assert result.reason == "latency"


def test_a_raising_model_fails_the_probe_without_raising() -> None:
    model = OnnxModel.load(DEFAULT_MODEL_DIR)
    golden = Golden.for_model(model)
    assert golden is not None
    bad = dataclasses.replace(golden, inputs=np.zeros((2, 3), dtype=np.float32),
                              expected=np.zeros(2))
    result = run_probe(model, bad)
    assert not result.ok
    assert result.reason == "error"
