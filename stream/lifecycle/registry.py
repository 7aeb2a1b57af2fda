"""The model registry as the settings configure it (directory, trusted signing keys)."""

from __future__ import annotations

from pathlib import Path

from processors.registry.directory import DirectoryRegistry
from stream.settings import Settings


def registry_of(settings: Settings) -> DirectoryRegistry:
    """The registry, checking signatures when keys are trusted."""
    keys = [Path(k.strip()) for k in (settings.model_trusted_keys or "").split(",") if k.strip()]
    return DirectoryRegistry(settings.registry_path, trusted_keys=keys,
                             require_signature=settings.model_require_signature)
