"""The registry interface: publish immutable model versions, list them, fetch verified."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from processors.exceptions import ModelLoadError


class RegistryError(ModelLoadError):
    """A registry operation failed; the message names the artifact and what is wrong."""


@dataclass(frozen=True)
class ArtifactInfo:
    """One published model version, as its manifest describes it."""

    name: str
    version: str
    created_at: float
    files: dict[str, str]  # relative path -> sha256
    signature: dict[str, Any]  # input, output, features
    feature_views: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """The model file's sha256 (what predictions can be traced to)."""
        return self.files.get("model.onnx", "")


class ModelRegistry(Protocol):
    """Where model versions live (a directory today; an object store can implement it too)."""

    def publish(self, source: Path, name: str, version: str,
                tags: dict[str, str] | None = None) -> ArtifactInfo: ...

    def list(self, name: str | None = None) -> list[ArtifactInfo]: ...

    def fetch(self, name: str, version: str) -> Path: ...
