"""Retraining without Kafka: join served inputs with labels, train with checkpoints, export
to ONNX, judge the candidate against the active version (gates), report the run."""
