"""Write a trained candidate as a model directory the registry and the workers accept.

skl2onnx converts the scaler + MLP pipeline; its probability output [batch, 2] is sliced
to the positive class as ``score`` [batch, 1], the contract every served model keeps
(input ``features`` [batch, n], output ``score``). The directory starts as a copy of the
active version's (feature views, fallback settings, the backup model), then gets its own
model.onnx, model.json and golden.json. Nothing in it depends on the clock, so the same
data and settings give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from processors.model import OnnxModel

# Files the candidate writes itself (and the registry's own): never copied from the base.
OWN_FILES = {"model.onnx", "model.json", "golden.json", "MANIFEST.json", "SIGNATURE.json",
             "report.json", "reference.json"}


def to_graph(pipe: Pipeline, n_features: int) -> onnx.ModelProto:
    """The pipeline as an ONNX graph: features[batch, n] -> score[batch, 1]."""
    inputs = [("features", FloatTensorType([None, n_features]))]
    graph_model: onnx.ModelProto = to_onnx(pipe, initial_types=inputs, target_opset=17,
                                           options={MLPClassifier: {"zipmap": False}})
    graph = graph_model.graph
    probabilities = next(o.name for o in graph.output if o.name == "probabilities")
    graph.initializer.extend([numpy_helper.from_array(np.array([v], dtype=np.int64), name)
                              for name, v in (("score_start", 1), ("score_end", 2),
                                              ("score_axis", 1))])
    graph.node.append(helper.make_node("Slice", [probabilities, "score_start", "score_end",
                                                 "score_axis"], ["score"], name="score"))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1]))
    graph_model.producer_name = "streaminfer-retrain"
    # skl2onnx lists the opset domains in an order that varies between processes (a fresh
    # run's model once differed from a resumed run's only there): sorted, the same
    # training gives the same bytes in every process.
    opsets = sorted((o.domain, o.version) for o in graph_model.opset_import)
    del graph_model.opset_import[:]
    graph_model.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets)
    onnx.checker.check_model(graph_model)
    return graph_model


def write_model_dir(pipe: Pipeline, features: tuple[str, ...], base: Path, out: Path,
                    version: str, golden_inputs: np.ndarray, extra: dict[str, Any]) -> OnnxModel:
    """Build ``out`` from ``base`` (the active version's directory) and the trained
    pipeline; returns the loaded candidate (loading checks the signature)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out, ignore=lambda _d, names: [n for n in names if n in OWN_FILES])
    for path in out.rglob("*"):  # a registry version's files are read-only
        path.chmod(0o755 if path.is_dir() else 0o644)
    blob = to_graph(pipe, len(features)).SerializeToString()
    (out / "model.onnx").write_bytes(blob)
    base_meta = json.loads((base / "model.json").read_text())
    meta = {key: value for key, value in base_meta.items() if key != "created_at"}
    meta.update({"version": version, "input": "features", "output": "score",
                 "features": list(features), "sha256": hashlib.sha256(blob).hexdigest(),
                 **extra})
    (out / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    model = OnnxModel.load(out)
    base_golden: dict[str, Any] = {}
    if (base / "golden.json").exists():
        base_golden = json.loads((base / "golden.json").read_text())
    expected = model.predict(golden_inputs.astype(np.float32))
    golden = {"inputs": golden_inputs.astype(np.float32).tolist(), "expected": expected.tolist(),
              "tolerance": base_golden.get("tolerance", 1e-4),
              "latency_budget_ms": base_golden.get("latency_budget_ms", 50)}
    (out / "golden.json").write_text(json.dumps(golden) + "\n")
    return model


def content_hash(model_dir: Path) -> str:
    """sha256 over the directory's files (names and bytes): the version's content."""
    h = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        if path.name in ("report.json", "MANIFEST.json", "SIGNATURE.json"):
            continue
        h.update(str(path.relative_to(model_dir)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
