"""The inference timeout really bounds the wait, and RunOptions.terminate frees the thread."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from processors.exceptions import InferenceError
from processors.model import OnnxModel
from processors.runner import ChaosSwitch, InferenceTimeout, TimedRunner
from processors.synthetic import FEATURE_NAMES

LAYERS = 80
WIDTH = 512


def slow_model(folder: Path) -> OnnxModel:
    """A deliberately slow ONNX graph: many wide MatMul+Tanh layers (seconds per big batch)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(
        rng.normal(0, 0.05, (len(FEATURE_NAMES), WIDTH)).astype(np.float32), "w_in"),
             numpy_helper.from_array(rng.normal(0, 0.05, (WIDTH, 1)).astype(np.float32), "w_out")]
    nodes = [helper.make_node("MatMul", ["features", "w_in"], ["h0"])]
    for i in range(LAYERS):
        inits.append(numpy_helper.from_array(
            rng.normal(0, 0.05, (WIDTH, WIDTH)).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"z{i}"]),
                  helper.make_node("Tanh", [f"z{i}"], [f"h{i + 1}"])]
    nodes += [helper.make_node("MatMul", [f"h{LAYERS}", "w_out"], ["logit"]),
              helper.make_node("Sigmoid", ["logit"], ["score"])]
    graph = helper.make_graph(
        nodes, "slow",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 30])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir()
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    (folder / "model.json").write_text(json.dumps({
        "name": "slow", "version": "1", "input": "features", "output": "score",
        "features": list(FEATURE_NAMES)}))
    return OnnxModel.load(folder)


def test_timeout_returns_on_time_and_terminate_frees_the_thread(tmp_path: Path) -> None:
    model = slow_model(tmp_path / "slow")
    big = np.random.default_rng(1).random((8192, 30), dtype=np.float32)
    started = time.perf_counter()
    model.predict(big)
    full = time.perf_counter() - started
    assert full > 1.0, f"the slow model is not slow enough on this machine ({full:.2f}s)"

    runner = TimedRunner(model, timeout_s=0.15)
    started = time.perf_counter()
    with pytest.raises(InferenceTimeout, match="not done in 150 ms"):
        runner.predict(big)
    waited = time.perf_counter() - started
    assert waited < 0.4, f"waited {waited:.2f}s for a 0.15s timeout"
    # The abandoned run was terminated at an operator boundary: a small batch right after
    # does not queue behind the rest of the full run's work.
    runner.timeout_s = 5.0
    started = time.perf_counter()
    runner.predict(big[:1])
    assert time.perf_counter() - started < full / 2
    runner.close()


def test_chaos_switch_fails_or_slows_while_its_file_exists(tmp_path: Path) -> None:
    switch = tmp_path / "chaos"
    chaos = ChaosSwitch(switch)
    chaos.apply()  # absent: nothing happens
    switch.write_text("fail")
    with pytest.raises(InferenceError, match="chaos"):
        chaos.apply()
    switch.write_text("slow 50")
    started = time.perf_counter()
    chaos.apply()
    assert time.perf_counter() - started >= 0.05
