"""Kafka's ACLs made to match the declaration: the bindings it implies, what the cluster
has, the difference, and applying it (create the missing, delete every other rule on the
namespace's resources: another principal's, a DENY, one limited to a host; other
namespaces' rules are left alone)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from stream.access.declaration import Declaration
from stream.exceptions import InfrastructureError

RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional_id": ResourceType.TRANSACTIONAL_ID, "cluster": ResourceType.BROKER}
PATTERNS = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
OPERATIONS = {"read": AclOperation.READ, "write": AclOperation.WRITE,
              "create": AclOperation.CREATE, "delete": AclOperation.DELETE,
              "alter": AclOperation.ALTER, "describe": AclOperation.DESCRIBE,
              "describe_configs": AclOperation.DESCRIBE_CONFIGS,
              "alter_configs": AclOperation.ALTER_CONFIGS,
              "idempotent_write": AclOperation.IDEMPOTENT_WRITE, "all": AclOperation.ALL}


@dataclass(frozen=True, order=True)
class Acl:
    """One rule, in a form that compares and prints plainly. The declaration only makes
    ALLOW rules from any host; the cluster may hold others."""

    principal: str  # User:<name>
    resource: str  # ResourceType name
    name: str
    pattern: str  # ResourcePatternType name
    operation: str  # AclOperation name
    host: str = "*"
    permission: str = "ALLOW"  # AclPermissionType name

    def binding(self) -> AclBinding:
        """The admin API's binding."""
        return AclBinding(ResourceType[self.resource], self.name, ResourcePatternType[self.pattern],
                          self.principal, self.host, AclOperation[self.operation],
                          AclPermissionType[self.permission])

    def __str__(self) -> str:
        how = "" if self.pattern == "LITERAL" else f" ({self.pattern.lower()})"
        verb = "may" if self.permission == "ALLOW" else "is DENIED to"
        where = "" if self.host == "*" else f" from host {self.host} only"
        return (f"{self.principal} {verb} {self.operation.lower()} "
                f"{self.resource.lower()} {self.name}{how}{where}")


def desired(declaration: Declaration) -> set[Acl]:
    """The ALLOW rules the declaration implies (super users need none)."""
    out = set()
    for name, principal in declaration.principals.items():
        for grant in principal.kafka:
            for op in grant.operations:
                out.add(Acl(f"User:{name}", RESOURCES[grant.resource].name, grant.name,
                            PATTERNS[grant.pattern].name, OPERATIONS[op].name))
    return out


def current(admin: AdminClient, principals: list[str] | None,
            timeout_s: float = 15.0) -> set[Acl]:
    """The rules the cluster holds (for ``principals``, User:<name>; None: everyone's),
    ALLOW and DENY, from any host."""
    # None matches any name, principal and host (the admin API's filter; its stubs say str).
    anything: Any = None
    flt = AclBindingFilter(ResourceType.ANY, anything, ResourcePatternType.ANY, anything,
                           anything, AclOperation.ANY, AclPermissionType.ANY)
    try:
        bindings = admin.describe_acls(flt, request_timeout=timeout_s).result(timeout=timeout_s)
    except Exception as exc:
        raise InfrastructureError(
            f"could not list Kafka's ACLs: {exc}. The client must be a super user (the "
            "admin principal) and the brokers must run an authorizer") from exc
    wanted = None if principals is None else set(principals)
    return {Acl(b.principal, b.restype.name, b.name, b.resource_pattern_type.name,
                b.operation.name, b.host, b.permission_type.name)
            for b in bindings if wanted is None or b.principal in wanted}


@dataclass(frozen=True)
class AclDiff:
    """What applying would change."""

    add: list[Acl]
    remove: list[Acl]

    @property
    def empty(self) -> bool:
        """Nothing to do."""
        return not self.add and not self.remove


def diff(declaration: Declaration, admin: AdminClient, namespace: str) -> AclDiff:
    """The declaration (rendered for ``namespace``) against the cluster. Every rule on
    the namespace's resources that the declaration does not make is to be removed,
    whoever it is for: an undeclared principal's, a DENY, one limited to a host. The
    namespace's resources are those the declaration names and every name under its
    prefixes that carry the namespace (``<ns>.``, ``<ns>-features-``, ``east.<ns>.``);
    another namespace's rules stay."""
    want = desired(declaration)
    have = current(admin, None)
    named = {(a.resource, a.name, a.pattern) for a in want}
    prefixes = tuple({f"{namespace}."} | {a.name for a in want if a.pattern == "PREFIXED"
                                          and namespace in a.name})

    def in_scope(acl: Acl) -> bool:
        return (acl.resource, acl.name, acl.pattern) in named or acl.name.startswith(prefixes)

    return AclDiff(sorted(want - have), sorted(a for a in have - want if in_scope(a)))


def apply(changes: AclDiff, admin: AdminClient, timeout_s: float = 15.0) -> None:
    """Create the missing rules, delete the extra ones; raise naming the first refusal.
    Returns once a broker answers with the new rules (the controller commits them first;
    brokers apply them a moment later, and a client arriving in between is refused)."""
    _change(changes, admin, timeout_s)
    principals = sorted({a.principal for a in [*changes.add, *changes.remove]})
    if not principals:
        return
    end = time.monotonic() + timeout_s
    while True:
        have = current(admin, principals, timeout_s)
        if set(changes.add) <= have and not set(changes.remove) & have:
            return
        if time.monotonic() > end:
            raise InfrastructureError(f"Kafka accepted the ACL changes but did not show them "
                                      f"within {timeout_s:g} s; run the command again")
        time.sleep(0.2)


def _change(changes: AclDiff, admin: AdminClient, timeout_s: float) -> None:
    if changes.add:
        for acl, fut in zip(changes.add, admin.create_acls(
                [a.binding() for a in changes.add], request_timeout=timeout_s).values(),
                strict=True):
            try:
                fut.result(timeout=timeout_s)
            except Exception as exc:
                raise InfrastructureError(f"Kafka refused the ACL '{acl}': {exc}") from exc
    if changes.remove:
        filters = [AclBindingFilter(ResourceType[a.resource], a.name,
                                    ResourcePatternType[a.pattern], a.principal, a.host,
                                    AclOperation[a.operation], AclPermissionType[a.permission])
                   for a in changes.remove]
        for acl, fut in zip(changes.remove, admin.delete_acls(
                filters, request_timeout=timeout_s).values(), strict=True):
            try:
                fut.result(timeout=timeout_s)
            except Exception as exc:
                raise InfrastructureError(f"Kafka refused to delete the ACL '{acl}': {exc}") \
                    from exc
