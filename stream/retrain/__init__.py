"""Retraining on Kafka: the worker's input recorder, label clients, reading the training
window, the ``streaminfer retrain`` job and its triggers (the core is processors.retrain)."""
