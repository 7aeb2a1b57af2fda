"""Feature views: which features live in the store, per entity, with defaults and TTLs.

A model directory may hold ``features.json``::

    {"entity": "card",
     "request_features": ["amount", "hour_of_day"],
     "sensitive_features": ["amount"],
     "views": [{"name": "card_activity", "ttl_s": 86400, "max_staleness_s": 3600,
                "features": {"tx_count_5m": {"type": "double", "default": 0.0}}}]}

Every model input must come from the request (``request_features``) or a view; the
worker checks that at start-up and names what is not covered. ``sensitive_features``
(optional, a subset of ``request_features``) are sealed by the producer client when it
holds field keys (processors/sealing).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from processors.exceptions import ModelLoadError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FeatureConfigError(ModelLoadError):
    """features.json is invalid or does not cover the model's inputs."""


@dataclass(frozen=True)
class FeatureSpec:
    """One stored feature."""

    name: str
    type: str
    default: float


@dataclass(frozen=True)
class FeatureView:
    """Features of one entity kept together in one Redis hash."""

    name: str
    entity: str
    features: tuple[FeatureSpec, ...]
    ttl_s: int
    max_staleness_s: float

    @property
    def names(self) -> list[str]:
        """Feature names, in definition order."""
        return [f.name for f in self.features]

    def defaults(self) -> dict[str, float]:
        """Every feature at its default."""
        return {f.name: f.default for f in self.features}


@dataclass(frozen=True)
class FeatureRepo:
    """The views a model reads and the features its requests carry."""

    entity: str
    views: tuple[FeatureView, ...]
    request_features: tuple[str, ...]
    source: Path
    sensitive_features: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path) -> FeatureRepo:
        """Read and validate; errors name the file and the field."""
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FeatureConfigError(f"{path}: cannot read feature views: {exc}") from exc
        entity = raw.get("entity")
        if not isinstance(entity, str) or not _NAME.match(entity):
            raise FeatureConfigError(f"{path}: 'entity' must be a name like 'card'")
        views = []
        seen: dict[str, str] = {}
        for i, v in enumerate(raw.get("views", [])):
            at = f"{path}: views[{i}]"
            name = v.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise FeatureConfigError(f"{at}.name must be a name")
            feats = v.get("features")
            if not isinstance(feats, dict) or not feats:
                raise FeatureConfigError(f"{at}.features must be a non-empty object")
            specs = []
            for fname, spec in feats.items():
                if fname in seen:
                    raise FeatureConfigError(f"{at}: feature {fname!r} is also in view "
                                             f"{seen[fname]!r}")
                seen[fname] = name
                ftype = (spec or {}).get("type", "double")
                if ftype not in ("double", "int"):
                    raise FeatureConfigError(f"{at}.features.{fname}.type must be double or int")
                try:
                    default = float((spec or {}).get("default", 0.0))
                except (TypeError, ValueError) as exc:
                    raise FeatureConfigError(f"{at}.features.{fname}.default must be a number"
                                             ) from exc
                specs.append(FeatureSpec(fname, ftype, default))
            ttl = int(v.get("ttl_s", 86_400))
            staleness = float(v.get("max_staleness_s", ttl))
            if ttl <= 0 or staleness < 0:
                raise FeatureConfigError(f"{at}: ttl_s must be > 0 and max_staleness_s >= 0")
            views.append(FeatureView(name, str(v.get("entity", entity)), tuple(specs), ttl,
                                     staleness))
        request = raw.get("request_features", [])
        if not isinstance(request, list) or not all(isinstance(f, str) for f in request):
            raise FeatureConfigError(f"{path}: request_features must be a list of names")
        sensitive = raw.get("sensitive_features", [])
        if not isinstance(sensitive, list) or not all(isinstance(f, str) for f in sensitive):
            raise FeatureConfigError(f"{path}: sensitive_features must be a list of names")
        stray = [f for f in sensitive if f not in request]
        if stray:
            raise FeatureConfigError(f"{path}: sensitive_features {stray} are not in "
                                     "request_features (only features the request carries "
                                     "can be sealed)")
        return cls(entity, tuple(views), tuple(request), path, tuple(sensitive))

    @classmethod
    def for_model(cls, model_dir: Path) -> FeatureRepo | None:
        """The repo next to a model, if it has one."""
        path = model_dir / "features.json"
        return cls.load(path) if path.exists() else None

    def view(self, name: str) -> FeatureView:
        """A view by name."""
        for v in self.views:
            if v.name == name:
                return v
        raise FeatureConfigError(f"{self.source}: no view named {name!r}")

    def check_covers(self, model_inputs: tuple[str, ...]) -> None:
        """Every model input must come from the request or a view."""
        provided = set(self.request_features) | {n for v in self.views for n in v.names}
        uncovered = [f for f in model_inputs if f not in provided]
        if uncovered:
            raise FeatureConfigError(
                f"{self.source}: the model needs features no view or request provides: "
                f"{uncovered}; add them to a view or to request_features")
