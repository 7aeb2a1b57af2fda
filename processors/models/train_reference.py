"""Train the reference fraud model on synthetic data and export it to ONNX.

Regenerates ``processors/models/fraud/`` (model.onnx, model.json, golden.json and
reference.json, the training data's profile that drift is measured against):

    .venv/bin/python -m processors.models.train_reference

A 30-32-16-1 MLP with input standardisation folded into the graph, trained with
plain numpy (Adam, binary cross-entropy); exporting needs the ``onnx`` package
(a dev dependency). Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np

from processors.synthetic import FEATURE_NAMES, N_FEATURES, sample_labelled

OUT_DIR = Path(__file__).parent / "fraud"


def _init(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return (rng.normal(0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))).astype(np.float64)


def train(seed: int, n: int, epochs: int) -> tuple[dict[str, np.ndarray], float]:
    """Return the weights (with the scaler) and the held-out AUC."""
    rng = np.random.default_rng(seed)
    x, y = sample_labelled(rng, n)
    x = x.astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / std
    split = int(n * 0.8)
    sizes = [N_FEATURES, 32, 16, 1]
    w = [_init(rng, a, b) for a, b in itertools.pairwise(sizes)]
    b = [np.zeros(s) for s in sizes[1:]]
    params = w + b
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, beta1, beta2, step = 3e-3, 0.9, 0.999, 0
    for _ in range(epochs):
        order = rng.permutation(split)
        for start in range(0, split, 256):
            idx = order[start:start + 256]
            xb, yb = xs[idx], y[idx][:, None]
            h1 = np.maximum(xb @ w[0] + b[0], 0)
            h2 = np.maximum(h1 @ w[1] + b[1], 0)
            out = 1 / (1 + np.exp(-(h2 @ w[2] + b[2])))
            d3 = (out - yb) / len(idx)
            d2 = (d3 @ w[2].T) * (h2 > 0)
            d1 = (d2 @ w[1].T) * (h1 > 0)
            grads = [xb.T @ d1, h1.T @ d2, h2.T @ d3, d1.sum(0), d2.sum(0), d3.sum(0)]
            step += 1
            for i, g in enumerate(grads):
                m[i] = beta1 * m[i] + (1 - beta1) * g
                v[i] = beta2 * v[i] + (1 - beta2) * g * g
                mh, vh = m[i] / (1 - beta1**step), v[i] / (1 - beta2**step)
                params[i] -= lr * mh / (np.sqrt(vh) + 1e-8)
    h1 = np.maximum(xs[split:] @ w[0] + b[0], 0)
    h2 = np.maximum(h1 @ w[1] + b[1], 0)
    scores = (h2 @ w[2] + b[2]).ravel()
    auc = _auc(scores, y[split:])
    weights = {"mean": mean, "std": std, "w0": w[0], "b0": b[0], "w1": w[1], "b1": b[1],
               "w2": w[2], "b2": b[2]}
    return weights, auc


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def export(weights: dict[str, np.ndarray], path: Path) -> None:
    """Write the MLP as an ONNX graph: features[N,30] -> score[N,1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(v.astype(np.float32), name=k) for k, v in weights.items()]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centered"]),
        helper.make_node("Div", ["centered", "std"], ["scaled"]),
        helper.make_node("Gemm", ["scaled", "w0", "b0"], ["z1"]),
        helper.make_node("Relu", ["z1"], ["h1"]),
        helper.make_node("Gemm", ["h1", "w1", "b1"], ["z2"]),
        helper.make_node("Relu", ["z2"], ["h2"]),
        helper.make_node("Gemm", ["h2", "w2", "b2"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes, "fraud_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", N_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="streaminfer")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


BACKUP_FEATURES = ("merchant_risk", "ip_risk", "amount_zscore", "foreign", "device_new",
                   "tx_count_5m", "declines_24h", "is_night")

FALLBACK = {
    "order": ["backup_model", "last_known_good", "rules", "constant"],
    "backup_model": "backup",
    "constant": {"score": 0.05},
    "rules": [
        {"name": "risky-ip", "score": 0.85,
         "when": [{"feature": "ip_risk", "op": ">=", "value": 0.4}]},
        {"name": "risky-merchant-new-device", "score": 0.7,
         "when": [{"feature": "merchant_risk", "op": ">=", "value": 0.4},
                  {"feature": "device_new", "op": "==", "value": 1}]},
        {"name": "very-unusual-amount", "score": 0.6,
         "when": [{"feature": "amount_zscore", "op": ">=", "value": 4}]},
    ],
    "last_known_good_ttl_s": 86400,
    "sla_ms": 5000,
    "inference_timeout_ms": 1000,
}


def train_backup(seed: int, n: int, out: Path) -> float:
    """Logistic regression over 8 features, exported to ``out``; returns its holdout AUC."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed + 1)
    x_all, y = sample_labelled(rng, n)
    cols = [FEATURE_NAMES.index(f) for f in BACKUP_FEATURES]
    x = x_all[:, cols].astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / std
    split = int(n * 0.8)
    w, b = np.zeros(len(cols)), 0.0
    for _ in range(300):
        p = 1 / (1 + np.exp(-(xs[:split] @ w + b)))
        g = p - y[:split]
        w -= 0.5 * xs[:split].T @ g / split
        b -= 0.5 * g.mean()
    auc = _auc(xs[split:] @ w + b, y[split:])
    weight = (w / std)[:, None].astype(np.float32)
    bias = np.array([b - float((w * mean / std).sum())], dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "w", "b"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["score"])],
        "fraud_backup_lr",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", len(cols)])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="streaminfer")
    model.ir_version = 8
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(model.SerializeToString())
    meta = {"name": "fraud", "version": "1-backup", "input": "features", "output": "score",
            "features": list(BACKUP_FEATURES),
            "sha256": hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest(),
            "metrics": {"holdout_auc": round(auc, 4)},
            "guardrails": {"score_min": 0.0, "score_max": 1.0}}
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_golden(out, columns=cols)
    return auc


def write_golden(model_dir: Path, rows: int = 8, seed: int = 1234,
                 columns: list[int] | None = None) -> None:
    """Write golden.json: fixed inputs and the exported model's outputs for them."""
    from processors.model import OnnxModel
    from processors.synthetic import sample_features

    model = OnnxModel.load(model_dir)
    inputs = sample_features(np.random.default_rng(seed), rows)
    if columns is not None:
        inputs = inputs[:, columns]
    expected = model.predict(inputs)
    golden = {"inputs": inputs.tolist(), "expected": expected.tolist(), "tolerance": 1e-4,
              "latency_budget_ms": 50}
    (model_dir / "golden.json").write_text(json.dumps(golden) + "\n")


def main() -> None:
    """Train, export and write the metadata next to the model."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    weights, auc = train(args.seed, args.samples, args.epochs)
    onnx_path = args.out / "model.onnx"
    export(weights, onnx_path)
    meta = {
        "name": "fraud",
        "version": "1",
        "input": "features",
        "output": "score",
        "features": list(FEATURE_NAMES),
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": {"holdout_auc": round(auc, 4)},
        "guardrails": {"score_min": 0.0, "score_max": 1.0},
        "fallback": FALLBACK,
        "training": {"seed": args.seed, "samples": args.samples, "epochs": args.epochs},
    }
    (args.out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_golden(args.out)
    from processors.model import OnnxModel
    from processors.retrain.drift import write_reference

    x_ref, _ = sample_labelled(np.random.default_rng(args.seed), 20_000)
    write_reference(args.out, x_ref, OnnxModel.load(args.out).predict(x_ref), FEATURE_NAMES)
    backup_auc = train_backup(args.seed, args.samples, args.out / "backup")
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size} bytes), holdout AUC {auc:.3f}; "
          f"backup model AUC {backup_auc:.3f}")


if __name__ == "__main__":
    main()
