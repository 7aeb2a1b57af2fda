"""Per-model fallback configuration, read from the ``fallback`` section of model.json.

    "fallback": {
      "order": ["backup_model", "last_known_good", "rules", "constant"],
      "constant": {"score": 0.03},
      "rules": [
        {"name": "risky-ip", "score": 0.9,
         "when": [{"feature": "ip_risk", "op": ">=", "value": 0.5}]}
      ],
      "backup_model": "backup",
      "last_known_good_ttl_s": 86400,
      "sla_ms": 5000,
      "inference_timeout_ms": 1000
    }

Rules are data: a rule answers when all of its conditions hold; the first matching
rule wins; a request no rule matches goes on to the next fallback in ``order``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fallback.exceptions import FallbackConfigError

KINDS = ("backup_model", "last_known_good", "rules", "constant")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}


@dataclass(frozen=True)
class Condition:
    """``features[feature] <op> value``."""

    feature: str
    op: str
    value: float


@dataclass(frozen=True)
class Rule:
    """A named rule: all conditions true -> ``score``."""

    name: str
    score: float
    when: tuple[Condition, ...]


@dataclass(frozen=True)
class FallbackConfig:
    """How one model degrades."""

    order: tuple[str, ...] = ("constant",)
    constant_score: float | None = None
    rules: tuple[Rule, ...] = ()
    backup_model: Path | None = None
    last_known_good_ttl_s: int = 86_400
    sla_ms: int | None = None
    inference_timeout_ms: int = 1000
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, model_dir: Path, where: str) -> FallbackConfig:
        """Validate the ``fallback`` section; errors name the file and the field."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise FallbackConfigError(f"{where}: 'fallback' must be an object")
        order = tuple(raw.get("order", ("constant",)))
        unknown = [k for k in order if k not in KINDS]
        if unknown:
            raise FallbackConfigError(f"{where}: fallback.order has unknown kinds {unknown}; "
                                      f"known: {list(KINDS)}")
        constant = raw.get("constant", {}).get("score") if "constant" in raw else None
        if "constant" in order and constant is None:
            raise FallbackConfigError(f"{where}: fallback.order names 'constant' but "
                                      "fallback.constant.score is missing")
        rules = tuple(_rule(r, i, where) for i, r in enumerate(raw.get("rules", [])))
        if "rules" in order and not rules:
            raise FallbackConfigError(f"{where}: fallback.order names 'rules' but none are given")
        backup = raw.get("backup_model")
        backup_path = (model_dir / backup) if backup else None
        if "backup_model" in order and backup_path is None:
            raise FallbackConfigError(f"{where}: fallback.order names 'backup_model' but "
                                      "fallback.backup_model (a directory) is missing")
        timeout = int(raw.get("inference_timeout_ms", 1000))
        if timeout <= 0:
            raise FallbackConfigError(f"{where}: fallback.inference_timeout_ms must be > 0")
        sla = raw.get("sla_ms")
        return cls(order=order, constant_score=None if constant is None else float(constant),
                   rules=rules, backup_model=backup_path,
                   last_known_good_ttl_s=int(raw.get("last_known_good_ttl_s", 86_400)),
                   sla_ms=None if sla is None else int(sla), inference_timeout_ms=timeout)


def _rule(raw: Any, index: int, where: str) -> Rule:
    at = f"{where}: fallback.rules[{index}]"
    if not isinstance(raw, Mapping) or "score" not in raw or not raw.get("when"):
        raise FallbackConfigError(f"{at} needs 'score' and a non-empty 'when' list")
    conditions = []
    for j, cond in enumerate(raw["when"]):
        if not isinstance(cond, Mapping) or cond.get("op") not in OPS or "feature" not in cond:
            raise FallbackConfigError(
                f"{at}.when[{j}] needs 'feature', 'op' (one of {list(OPS)}) and 'value'")
        try:
            value = float(cond["value"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FallbackConfigError(f"{at}.when[{j}].value must be a number") from exc
        conditions.append(Condition(str(cond["feature"]), str(cond["op"]), value))
    return Rule(str(raw.get("name", f"rule-{index}")), float(raw["score"]), tuple(conditions))
