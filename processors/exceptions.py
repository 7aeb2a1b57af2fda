"""Errors of the inference core."""

from __future__ import annotations

from schemas.exceptions import StreaminferError


class ModelLoadError(StreaminferError):
    """A model artifact is missing, corrupt or does not match its metadata."""


class ModelSignatureError(ModelLoadError):
    """The ONNX graph's inputs/outputs do not match what the metadata and requests say."""


class RequestValidationError(StreaminferError):
    """A request cannot be scored by the model as it is (poison, never retried)."""

    retriable = False


class MissingFeaturesError(RequestValidationError):
    """The request lacks features the model needs (a fallback may still answer it)."""


class InferenceError(StreaminferError):
    """ONNX Runtime failed on a batch (may succeed again; the fallback issue decides)."""

    retriable = True
