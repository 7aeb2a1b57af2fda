"""Load an ONNX model with its metadata and run whole batches through ONNX Runtime.

A model lives in a directory holding ``model.onnx`` and ``model.json``::

    {"name": "fraud", "version": "1", "input": "features", "output": "score",
     "features": ["amount", ...], "sha256": "..."}

``features`` orders the columns of the input tensor. At load time the graph is
checked against the metadata (one float input of shape [batch, len(features)], the
named output present) and the file against its hash, with errors naming the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from processors.exceptions import InferenceError, ModelLoadError, ModelSignatureError

DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "fraud"


@dataclass(frozen=True)
class ModelMetadata:
    """What the worker needs to know about a model besides its graph."""

    name: str
    version: str
    input: str
    output: str
    features: tuple[str, ...]
    sha256: str | None = None
    score_min: float | None = None  # guardrails: scores outside are counted and alarmed
    score_max: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)  # the whole file (fallback etc.)

    @classmethod
    def from_file(cls, path: Path) -> ModelMetadata:
        """Read and validate ``model.json``."""
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path}: cannot read model metadata: {exc}") from exc
        missing = [k for k in ("name", "version", "input", "output", "features") if k not in raw]
        if missing:
            raise ModelLoadError(f"{path}: metadata lacks {', '.join(missing)}")
        features = raw["features"]
        if not isinstance(features, list) or not features or not all(
            isinstance(f, str) for f in features
        ):
            raise ModelLoadError(f"{path}: 'features' must be a non-empty list of names")
        if len(set(features)) != len(features):
            raise ModelLoadError(f"{path}: 'features' has duplicate names")
        guard = raw.get("guardrails") or {}
        if not isinstance(guard, dict):
            raise ModelLoadError(f"{path}: 'guardrails' must be an object")
        bounds = [guard.get("score_min"), guard.get("score_max")]
        if any(b is not None and not isinstance(b, (int, float)) for b in bounds):
            raise ModelLoadError(f"{path}: guardrails score_min/score_max must be numbers")
        return cls(
            name=str(raw["name"]), version=str(raw["version"]), input=str(raw["input"]),
            output=str(raw["output"]), features=tuple(features), sha256=raw.get("sha256"),
            score_min=bounds[0], score_max=bounds[1], raw=raw,
        )


@dataclass(frozen=True)
class RuntimeOptions:
    """ONNX Runtime threading. One intra-op thread and no spinning suit small models
    on shared cores: the batch, not parallelism inside one op, carries throughput."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False


class OnnxModel:
    """One loaded model version. Thread-safe for ``predict`` (ONNX Runtime sessions are)."""

    def __init__(self, meta: ModelMetadata, session: ort.InferenceSession, source: Path) -> None:
        self.meta = meta
        self.session = session
        self.source = source

    @property
    def name(self) -> str:
        """Model name (what requests ask for)."""
        return self.meta.name

    @property
    def version(self) -> str:
        """Model version (what predictions carry)."""
        return self.meta.version

    @classmethod
    def load(cls, path: Path, options: RuntimeOptions | None = None) -> OnnxModel:
        """Load from a model directory, or from a ``.onnx`` file with a ``model.json`` beside it."""
        path = Path(path)
        if path.is_dir():
            onnx_path, meta_path = path / "model.onnx", path / "model.json"
        else:
            onnx_path, meta_path = path, path.with_name("model.json")
        if not onnx_path.exists():
            raise ModelLoadError(f"{onnx_path}: model file not found (set --model-path)")
        if not meta_path.exists():
            raise ModelLoadError(f"{meta_path}: model metadata not found next to {onnx_path}")
        meta = ModelMetadata.from_file(meta_path)
        blob = onnx_path.read_bytes()
        if meta.sha256 and hashlib.sha256(blob).hexdigest() != meta.sha256:
            raise ModelLoadError(
                f"{onnx_path}: sha256 does not match {meta_path}; the artifact is corrupt or "
                "was replaced without updating its metadata"
            )
        opts = options or RuntimeOptions()
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.intra_op_threads
        so.inter_op_num_threads = opts.inter_op_threads
        spin = "1" if opts.allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        try:
            session = ort.InferenceSession(blob, sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"{onnx_path}: ONNX Runtime cannot load it: {exc}") from exc
        model = cls(meta, session, onnx_path)
        model._check_signature()
        return model

    def _check_signature(self) -> None:
        inputs = self.session.get_inputs()
        where = str(self.source)
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ModelSignatureError(f"{where}: expected exactly one input, graph has {names}")
        inp = inputs[0]
        if inp.name != self.meta.input:
            raise ModelSignatureError(
                f"{where}: metadata input is {self.meta.input!r}, graph input is {inp.name!r}"
            )
        if inp.type != "tensor(float)":
            raise ModelSignatureError(f"{where}: input {inp.name!r} is {inp.type}, need float")
        shape = list(inp.shape)
        width = len(self.meta.features)
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
            raise ModelSignatureError(
                f"{where}: input {inp.name!r} has shape {shape}, but metadata lists {width} "
                f"features, so it must be [batch, {width}]"
            )
        outputs = [o.name for o in self.session.get_outputs()]
        if self.meta.output not in outputs:
            raise ModelSignatureError(
                f"{where}: metadata output {self.meta.output!r} not among graph outputs {outputs}"
            )

    def check_request_schema(self, feature_names: set[str] | None = None) -> None:
        """Check that requests can supply every model input (when the request schema fixes them)."""
        if feature_names is None:
            return
        missing = [f for f in self.meta.features if f not in feature_names]
        if missing:
            raise ModelSignatureError(
                f"{self.source}: model needs features the requests do not provide: {missing}"
            )

    def predict(self, batch: np.ndarray, run_options: ort.RunOptions | None = None) -> np.ndarray:
        """Scores for a [n, features] float32 batch, as a 1-D float64 array.

        ``run_options.terminate = True`` from another thread stops a running call at the
        next operator boundary (it then raises InferenceError).
        """
        try:
            out = self.session.run([self.meta.output], {self.meta.input: batch}, run_options)[0]
        except Exception as exc:
            raise InferenceError(f"{self.meta.name} v{self.meta.version}: {exc}") from exc
        scores = np.asarray(out, dtype=np.float64).reshape(len(batch), -1)[:, 0]
        return scores

