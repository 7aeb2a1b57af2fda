"""`streaminfer features get|backfill`: look at and load the online feature store."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from processors.features.store import UPDATED_AT, RedisFeatureStore
from processors.features.views import FeatureRepo
from stream.connect.redis_pool import make_redis
from stream.exceptions import ConfigurationError
from stream.settings import Settings


def repo_for(settings: Settings) -> FeatureRepo:
    """The feature views of the configured model."""
    model_dir = settings.model_dir
    repo = FeatureRepo.for_model(model_dir)
    if repo is None:
        raise ConfigurationError(f"{model_dir} has no features.json: this model reads no "
                                 "stored features (set --model-path to one that does)")
    return repo


def store_for(settings: Settings) -> RedisFeatureStore:
    """A store on the configured Redis."""
    return RedisFeatureStore(make_redis(settings, timeout_s=5.0), settings.namespace)


def get(settings: Settings, entity: str) -> list[dict[str, Any]]:
    """Per view: stored values (or defaults), age and TTL left, as the model would see them."""
    repo, store = repo_for(settings), store_for(settings)
    now_ms = time.time_ns() // 1_000_000
    out = []
    types = {f.name: f.type for v in repo.views for f in v.features}
    rows = store.read([(v.name, entity, v.names) for v in repo.views], types)
    for view, row in zip(repo.views, rows, strict=True):
        values = view.defaults()
        stored: dict[str, float] = {}
        updated = None
        corrupt: dict[str, str] = {}
        if row is not None:
            stored, updated, corrupt = row.values, row.updated_at_ms, row.corrupt
            values.update(stored)
        ttl = store.client.ttl(store.key(view.name, entity))
        out.append({
            "view": view.name, "entity": entity, "found": row is not None,
            "age_s": None if updated is None else round((now_ms - updated) / 1000, 3),
            "ttl_s": ttl if isinstance(ttl, int) and ttl >= 0 else None,
            "features": {n: {"value": values[n],
                             "source": "store" if n in stored
                             else f"default (stored value corrupt: {corrupt[n]})" if n in corrupt
                             else "default"}
                         for n in view.names},
        })
    return out


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSON-lines or Parquet file: view, entity, features, optional updated_at."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ConfigurationError("reading Parquet needs pyarrow: pip install pyarrow") from exc
        for row in pq.read_table(path).to_pylist():
            yield row
        return
    with path.open() as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{path}:{number}: not JSON: {exc}") from exc
            row["_line"] = number
            yield row


def backfill(settings: Settings, path: Path, chunk: int = 500,
             progress: Any = None) -> int:
    """Write the file's rows to the store in pipelined chunks; returns rows written."""
    repo, store = repo_for(settings), store_for(settings)
    ttl = {v.name: v.ttl_s for v in repo.views}
    batch: list[tuple[str, str, dict[str, float], int | None]] = []
    written = 0
    for row in read_rows(path):
        where = f"{path}:{row.get('_line', '?')}"
        view_name, entity = row.get("view"), row.get("entity")
        if view_name not in ttl or not entity:
            raise ConfigurationError(f"{where}: needs 'view' (one of {sorted(ttl)}) and 'entity'")
        view = repo.view(str(view_name))
        feats = row.get("features") or {}
        unknown = [k for k in feats if k not in view.names and k != UPDATED_AT]
        if unknown:
            raise ConfigurationError(f"{where}: {unknown} are not features of view {view_name}")
        try:
            values = {k: float(v) for k, v in feats.items()}
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where}: feature values must be numbers") from exc
        batch.append((view.name, str(entity), values, row.get("updated_at")))
        if len(batch) >= chunk:
            store.write(batch, ttl)
            written += len(batch)
            batch = []
            if progress is not None:
                progress(written)
    if batch:
        store.write(batch, ttl)
        written += len(batch)
        if progress is not None:
            progress(written)
    return written
