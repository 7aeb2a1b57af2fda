"""What a worker does with sealed and sensitive features: open what is sealed with its
key ring, and (when required) refuse sensitive features that arrived in clear."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from processors.sealing.envelope import KEY_ID_HEADER, SealedFieldsError, open_sealed
from processors.sealing.keyring import KeySource


@dataclass(frozen=True)
class SealPolicy:
    """``keys`` None: this worker holds no field keys (a sealed request is a dead letter).
    ``sensitive``: the model's sensitive features (``features.json``). ``required``:
    a sensitive feature in clear is a dead letter too (stage ``decrypt``)."""

    keys: KeySource | None = None
    sensitive: frozenset[str] = field(default_factory=frozenset)
    required: bool = False

    def refresh(self) -> None:
        """Pick up a changed key file (the pipeline calls it once per batch)."""
        if self.keys is not None:
            self.keys.refresh()

    def open(self, request: dict[str, Any], header_kid: str | None) -> dict[str, Any]:
        """The request with its sealed features opened (or unchanged); raises
        SealedFieldsError for a record that must be dead-lettered."""
        if self.required and self.sensitive:
            clear = sorted(self.sensitive & request["features"].keys())
            if clear:
                raise SealedFieldsError(
                    f"features {clear[:5]} are sensitive for model {request['model']!r} and "
                    "arrived in clear (--require-sealed is on): send them through the "
                    "producer client with field keys (--field-keys-file)")
        if request.get("sealed") is None:
            return request
        if self.keys is None:
            raise SealedFieldsError(
                f"the request carries sealed features ({KEY_ID_HEADER} "
                f"{header_kid or 'not set'}) but this worker has no field keys: start it "
                "with --field-keys-file (or STREAMINFER_FIELD_KEYS), then replay the dead "
                "letter")
        return open_sealed(self.keys.current(), request, header_kid)
