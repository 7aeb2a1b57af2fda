"""The access declaration (``access.toml``): principals, their Kafka grants and Redis
rules, rendered for one namespace. Errors name the principal, the entry and the field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stream.exceptions import ConfigurationError

DEFAULT_FILE = Path(__file__).with_name("access.toml")
# Names a declaration may not give a principal, and why.
RESERVED = {
    "broker": "it is the brokers' own principal (User:broker, from their certificates' CN), "
              "which the controllers and replication trust",
    "default": "it is Redis' default user, which the secure stack turns off",
    "anonymous": "it is Kafka's principal for unauthenticated clients",
}
SEPARATORS = (".", "-", "_")  # a prefixed grant's name ends with one

Resource = Literal["topic", "group", "transactional_id", "cluster"]
Operation = Literal["read", "write", "create", "delete", "alter", "describe", "describe_configs",
                    "alter_configs", "idempotent_write", "all"]


class KafkaGrant(BaseModel):
    """ALLOW ``operations`` on one resource (a name, or every name with a prefix)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    resource: Resource
    name: str = Field(min_length=1)
    pattern: Literal["literal", "prefixed"] = "literal"
    operations: tuple[Operation, ...] = Field(min_length=1)


class Principal(BaseModel):
    """One user: SCRAM user of Kafka and ACL user of Redis, with the same name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    super_user: bool = False
    kafka: tuple[KafkaGrant, ...] = ()
    redis: tuple[str, ...] | None = None  # None: no Redis user


class Declaration(BaseModel):
    """Every principal, by name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    principals: dict[str, Principal]

    def render(self, namespace: str) -> Declaration:
        """The declaration with ``{ns}`` replaced by ``namespace``."""
        def sub(text: str) -> str:
            return text.replace("{ns}", namespace)

        principals = {}
        for name, p in self.principals.items():
            grants = tuple(g.model_copy(update={"name": sub(g.name)}) for g in p.kafka)
            rules = tuple(sub(r) for r in p.redis) if p.redis is not None else None
            principals[name] = p.model_copy(update={"kafka": grants, "redis": rules})
        return Declaration(principals=principals)

    @property
    def super_users(self) -> list[str]:
        """Names of the principals Kafka and Redis let do everything."""
        return [n for n, p in self.principals.items() if p.super_user]


def load(path: Path | None = None, namespace: str | None = None) -> Declaration:
    """Read and check a declaration (the packaged default when ``path`` is None); with
    ``namespace``, rendered for it."""
    source = path or DEFAULT_FILE
    try:
        raw = tomllib.loads(source.read_text())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the access declaration {source}: {exc.strerror}") \
            from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source} is not valid TOML: {exc}") from exc
    try:
        declaration = Declaration.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigurationError(f"{source} declares access wrongly:\n{problems}\n"
                                 "fix the entries named above (the file's header lists "
                                 "what each field takes)") from exc
    for name, principal in declaration.principals.items():
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigurationError(f"{source}: principal name {name!r} must be letters, "
                                     "digits, '-' or '_' (it becomes a Kafka and Redis user)")
        if name.lower() in RESERVED:
            raise ConfigurationError(f"{source}: principal name {name!r} is reserved: "
                                     f"{RESERVED[name.lower()]}; choose another name")
        for i, grant in enumerate(principal.kafka):
            if grant.pattern == "prefixed" and not grant.name.endswith(SEPARATORS):
                raise ConfigurationError(
                    f"{source}: principals.{name}.kafka[{i}]: the prefix {grant.name!r} has "
                    f"no separator at its end, so it also reaches {grant.name + 'X'!r} and "
                    f"every other name that starts with it (another namespace's, say); end "
                    f"it with one of {' '.join(repr(s) for s in SEPARATORS)}")
    return declaration.render(namespace) if namespace else declaration
