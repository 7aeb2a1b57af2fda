"""Requests to Kafka records: key, Avro value, headers, with sensitive features sealed.
Shared by every producer of requests (RequestProducer, FailoverProducer)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processors.sealing.envelope import KEY_ID_HEADER
from schemas.serde import Encoder
from stream.connect.field_keys import Sealer, sealer_for
from stream.settings import Settings

Headers = list[tuple[str, bytes | None]]
Encoded = tuple[bytes, bytes, Headers | None]


class RequestEncoder:
    """``sealer``: True builds one from the settings (field keys and the model's sensitive
    features), False or None encodes in clear."""

    def __init__(self, settings: Settings, sealer: Sealer | bool | None = True) -> None:
        self.sealer = sealer_for(settings) if sealer is True else (sealer or None)
        self._encode = Encoder("InferenceRequest")
        self.sealed: dict[str, int] = {}  # key id -> requests sealed with it

    def __call__(self, request: Mapping[str, Any]) -> Encoded:
        """(key, value, headers) of one request; raises SerdeError if it does not fit."""
        req = dict(request)
        headers: Headers | None = None
        if self.sealer is not None:
            req, kid = self.sealer.seal(req)
            if kid is not None:
                headers = [(KEY_ID_HEADER, kid.encode())]
                self.sealed[kid] = self.sealed.get(kid, 0) + 1
        return str(req["entity_id"]).encode(), self._encode(req), headers

    def summary(self) -> str:
        """'; sealed N with key K' for a command's last line (empty when nothing was)."""
        if not self.sealed:
            return ""
        return "; sealed sensitive features of " + ", ".join(
            f"{n} with key {kid}" for kid, n in self.sealed.items())
