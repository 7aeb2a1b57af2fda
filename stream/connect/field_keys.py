"""Field keys and sealing from settings: the key source workers open with, and the
producer-side sealer that :class:`stream.clients.RequestProducer` applies to each request."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from processors.features.views import FeatureRepo
from processors.model import ModelMetadata
from processors.sealing.envelope import seal_features
from processors.sealing.keyring import (
    FileKeySource,
    Keyring,
    KeySource,
    StaticKeySource,
    loose_permissions,
)
from stream.exceptions import ConfigurationError
from stream.settings import Settings

log = logging.getLogger(__name__)
ENV_SOURCE = "STREAMINFER_FIELD_KEYS"


def key_source(settings: Settings) -> KeySource | None:
    """The configured key ring (file first, then the environment), or None."""
    if settings.field_keys_file is not None:
        path = settings.field_keys_file
        source = FileKeySource(path)
        if loose_permissions(path):
            log.warning("field key file %s is readable by other users: `chmod 600 %s` (or "
                        "0440 for a group that must read it)", path, path)
        return source
    if settings.field_keys is not None:
        return StaticKeySource(Keyring.parse(settings.field_keys.get_secret_value(),
                                             ENV_SOURCE))
    return None


def model_sensitive_features(settings: Settings) -> tuple[str, frozenset[str]] | None:
    """(model name, its sensitive features) from the configured model directory's
    ``features.json``, or None when it has no such file or declares none."""
    model_dir = settings.model_dir
    repo = FeatureRepo.for_model(model_dir)
    if repo is None or not repo.sensitive_features:
        return None
    try:
        name = ModelMetadata.from_file(model_dir / "model.json").name
    except Exception:  # noqa: BLE001 - no readable model.json: the policy applies to every model
        name = "*"
    return name, frozenset(repo.sensitive_features)

SEALS_PER_KEY_LIMIT = 2**48  # records one field key seals in one process (see Sealer)


class Sealer:
    """Seals the sensitive features of each outgoing request with the primary key.

    ``fields`` maps a model name to its sensitive features (``"*"``: every model).
    ``seals`` counts the records sealed per key id; past ``limit`` with one key the
    sealer refuses and asks for a rotation. Each record is sealed with a key derived from
    a random 128-bit salt (envelope v2), so the limit is on salt collisions: at 2^48
    records the chance that two share a salt is about 2^-33 (without the derivation,
    random 96-bit nonces under one key would allow about 2^32)."""

    def __init__(self, keys: KeySource, fields: Mapping[str, frozenset[str]],
                 limit: int = SEALS_PER_KEY_LIMIT) -> None:
        self.keys = keys
        self.fields = dict(fields)
        self.limit = limit
        self.seals: dict[str, int] = {}

    def _fields(self, model: str) -> frozenset[str]:
        return self.fields.get(model) or self.fields.get("*") or frozenset()

    def seal(self, request: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The request to send and the key id to put in its header (None: nothing sealed)."""
        fields = self._fields(request["model"])
        if not fields:
            return request, None
        ring = self.keys.current()
        kid = ring.primary
        if kid is not None and self.seals.get(kid, 0) >= self.limit:
            raise ConfigurationError(
                f"field key {kid!r} sealed {self.seals[kid]:,} records in this process, its "
                f"limit ({self.limit:,}): rotate it (`streaminfer field-keys add`, then make "
                "the new key primary), then send again")
        sealed, used = seal_features(ring, request, fields)
        if used is not None:
            self.seals[used] = self.seals.get(used, 0) + 1
        return sealed, used


def sealer_for(settings: Settings) -> Sealer | None:
    """The producer's sealer, or None when there is nothing to seal or no key to seal with
    (then sensitive features go in clear, with a warning)."""
    if settings.seal_fields:
        fields = {"*": frozenset(f.strip() for f in settings.seal_fields.split(",") if f.strip())}
    else:
        declared = model_sensitive_features(settings)
        fields = {declared[0]: declared[1]} if declared else {}
    if not fields:
        return None
    keys = key_source(settings)
    if keys is None:
        if settings.seal_fields:
            raise ConfigurationError("--seal-fields is set but there are no field keys to seal "
                                     "with: set --field-keys-file (`streaminfer field-keys "
                                     "add` makes one)")
        log.warning("the model declares sensitive features %s but this producer has no field "
                    "keys: they are sent in clear (set --field-keys-file)",
                    sorted(next(iter(fields.values()))))
        return None
    keys.current().primary_key()  # fail now, not on the first request, if there is no primary
    return Sealer(keys, fields)
