"""Fuzz targets: the parsers that take outside bytes. Each takes one input and returns how
it was classified; the only exceptions allowed out are the typed ones each parser
documents, which count as a classification too. Anything else is a crash the fuzzer
reports (and the harness keeps as a regression file).

* ``request``: the request decoder and the limits (schemas.serde.Decoder, processors.limits)
* ``validation``: a decoded request through request validation and scoring (DataPlane.score)
* ``feature_value``: the feature-row value parser (processors.features.store.parse_value)
* ``control``: the control-record decoder and its checks (ModelControl, control_problem)
* ``json_lines``: the JSON-lines reader of ``streaminfer produce --file``
* ``sealed``: the sealed-features envelope, opened by a worker holding the fuzz key
  (processors.sealing); nothing but an authentic envelope may open
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from processors.control_state import control_problem
from processors.dataplane import DataPlane
from processors.features.store import CorruptValueError, parse_value
from processors.limits import Limits
from processors.model import DEFAULT_MODEL_DIR, OnnxModel
from processors.sealing.envelope import SealedFieldsError
from processors.sealing.keyring import Keyring, StaticKeySource
from processors.sealing.seal_policy import SealPolicy
from schemas.exceptions import SerdeError
from schemas.serde import Decoder
from stream.clients import requests_from_json_lines
from stream.exceptions import ConfigurationError

Target = Callable[[bytes], str]
LIMITS = Limits()


@cache
def _decoder(name: str) -> Decoder:
    return Decoder(name)


@cache
def _dataplane() -> DataPlane:
    return DataPlane(OnnxModel.load(DEFAULT_MODEL_DIR))


def request(data: bytes) -> str:
    """Decode a request and apply the limits."""
    try:
        LIMITS.check_raw(len(data), 0)
        req = _decoder("InferenceRequest")(data)
        LIMITS.check_request(req)
    except SerdeError as exc:
        return f"refused:{type(exc).__name__}"
    missing = {"request_id", "entity_id", "model", "created_at", "features"} - set(req)
    if missing:
        raise AssertionError(f"decoded a request without {missing}")
    return "decoded"


def validation(data: bytes) -> str:
    """A decoded request, scored: every request gets a score or a named rejection."""
    try:
        req = _decoder("InferenceRequest")(data)
        LIMITS.check_request(req)
    except SerdeError:
        return "undecodable"
    scores = _dataplane().score([req])
    if len(scores.indices) + len(scores.rejections) != 1:
        raise AssertionError(f"request neither scored nor rejected: {scores}")
    return "rejected" if scores.rejections else "scored"


def feature_value(data: bytes) -> str:
    """A stored feature value (bytes as Redis returns them), both types."""
    out = []
    for ftype in ("double", "int"):
        try:
            value = parse_value(data, ftype)
        except CorruptValueError:
            out.append("corrupt")
            continue
        if value - value != 0.0:
            raise AssertionError(f"parse_value let a non-finite value through: {data!r}")
        out.append("number")
    return "/".join(out)


def control(data: bytes) -> str:
    """A control record: decoded and checked, or refused with a reason."""
    try:
        record: dict[str, Any] = _decoder("ModelControl")(data)
    except SerdeError:
        return "undecodable"
    return "invalid" if control_problem(record) is not None else "valid"


def json_lines(data: bytes) -> str:
    """``produce --file`` input: every line parsed into a request or refused by name."""
    text = data.decode("utf-8", "replace")
    try:
        got = list(requests_from_json_lines(text.splitlines(), "fuzz"))
    except ConfigurationError as exc:
        if "fuzz:" not in str(exc):
            raise AssertionError(f"a refusal that does not name the line: {exc}") from None
        return "refused"
    return f"parsed:{min(len(got), 3)}"


SEALED_REQUEST: dict[str, Any] = {"request_id": "fuzz", "entity_id": "e", "model": "fraud",
                                  "created_at": 1_700_000_000_000, "deadline_ms": None,
                                  "priority": 0, "features": {"hour_of_day": 3.0},
                                  "sealed": None}


@cache
def _seal_policy() -> SealPolicy:
    ring = Keyring({"fuzz": b"f" * 32}, "fuzz")
    return SealPolicy(StaticKeySource(ring), frozenset({"amount"}))


def sealed(data: bytes) -> str:
    """Envelope bytes in a fixed request: opened (only if authentic) or refused by name."""
    try:
        opened = _seal_policy().open({**SEALED_REQUEST, "sealed": data}, None)
    except SealedFieldsError:
        return "refused"
    if not all(isinstance(v, float) for v in opened["features"].values()):
        raise AssertionError(f"opened features that are not numbers: {opened['features']}")
    return "opened"


TARGETS: dict[str, Target] = {"request": request, "validation": validation,
                              "feature_value": feature_value, "control": control,
                              "json_lines": json_lines, "sealed": sealed}
