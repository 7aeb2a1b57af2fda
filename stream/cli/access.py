"""``streaminfer acls``: least privilege declared in one file, applied to Kafka and Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stream.cli.options import CONNECTION, REDIS, resolve, settings_options
from stream.settings import Settings, state_dir


@click.group("acls")
def acls() -> None:
    """Principals and their rights (stream/access/access.toml, or --file): Kafka ACLs and
    Redis ACL users. Connect as a super user (the admin principal)."""


def _passwords_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    return state_dir() / "secure" / "passwords"


def _plan(s: Settings, file: Path | None, passwords: Path, with_redis: bool) -> Any:
    import redis
    from confluent_kafka.admin import AdminClient

    from stream.access import kafka_acls, redis_acls
    from stream.access.declaration import load
    from stream.connect import kafka_config
    from stream.connect.redis_pool import make_redis

    declaration = load(file, s.namespace)
    admin = AdminClient(kafka_config.admin(s))
    kafka_changes = kafka_acls.diff(declaration, admin, s.namespace)
    redis_changes: list[redis_acls.UserChange] = []
    client = None
    if with_redis:
        made = make_redis(s, timeout_s=5.0)
        if not isinstance(made, redis.Redis):
            raise click.UsageError("Redis Cluster keeps ACL users per node: run this once per "
                                   "node with --redis-mode standalone --redis-url <node>")
        client = made
        redis_changes = redis_acls.diff(declaration, client, passwords)
    return declaration, admin, kafka_changes, client, redis_changes


@acls.command("apply")
@click.option("--file", "file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The access declaration (default: the packaged stream/access/access.toml).")
@click.option("--passwords-dir", type=click.Path(path_type=Path, file_okay=False),
              help="One <principal>.password file per Redis user (default: the secure dev "
                   "cluster's, $STREAMINFER_HOME/secure/passwords).")
@click.option("--dry-run", is_flag=True, help="Print the difference; change nothing.")
@click.option("--check", is_flag=True, help="Print every difference and exit 1 when there "
              "is one (drift: a missing grant, another principal's or a DENY or host-limited "
              "rule on the namespace, a Redis user's rules or passwords); change nothing.")
@click.option("--redis/--no-redis", "with_redis", default=True, show_default=True,
              help="Also make Redis' ACL users match.")
@settings_options(*CONNECTION, *REDIS)
def acls_apply(file: Path | None, passwords_dir: Path | None, dry_run: bool, check: bool,
               with_redis: bool, **kwargs: Any) -> None:
    """Make Kafka's ACLs and Redis' users match the declaration (idempotent). ACLs of the
    declared principals that the file does not grant are removed; other principals' are
    left alone. Prints one line per change (+ added, - removed, ~ Redis user set)."""
    from stream.access import kafka_acls, redis_acls

    s = resolve(kwargs, CONNECTION, REDIS)
    passwords = _passwords_dir(passwords_dir)
    _declaration, admin, kafka_changes, client, redis_changes = _plan(s, file, passwords,
                                                                      with_redis)
    for acl in kafka_changes.add:
        click.echo(f"+ {acl}")
    for acl in kafka_changes.remove:
        click.echo(f"- {acl}")
    for change in redis_changes:
        click.echo(f"~ Redis user {change.name}: {change.reason}")
    total = len(kafka_changes.add) + len(kafka_changes.remove) + len(redis_changes)
    if check:
        if total:
            click.echo(f"drift: {total} difference(s) from the declaration (above); "
                       "`streaminfer acls apply` makes them match", err=True)
            raise SystemExit(1)
        click.echo("no drift: Kafka and Redis match the declaration", err=True)
        return
    if dry_run:
        click.echo(f"{total} change(s) would be made (--dry-run: nothing changed)", err=True)
        return
    kafka_acls.apply(kafka_changes, admin)
    if client is not None:
        redis_acls.apply(redis_changes, client, passwords)
        redis_acls.save_if_file(client)
    click.echo(f"{total} change(s) made; Kafka and Redis match the declaration" if total
               else "nothing to change: Kafka and Redis match the declaration", err=True)


@acls.command("show")
@click.option("--file", "file", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The access declaration (default: the packaged one).")
@click.option("--namespace", default="streaminfer", show_default=True, envvar="STREAMINFER_NAMESPACE")
def acls_show(file: Path | None, namespace: str) -> None:
    """Print who may do what, as declared (no cluster needed)."""
    from stream.access.declaration import load
    from stream.access.kafka_acls import desired

    declaration = load(file, namespace)
    rules = sorted(desired(declaration))
    for name, p in declaration.principals.items():
        click.echo(f"{name}: {p.description}")
        if p.super_user:
            click.echo("  super user of Kafka and Redis")
        for acl in rules:
            if acl.principal == f"User:{name}":
                click.echo(f"  kafka: {str(acl).split(' may ', 1)[1]}")
        if p.redis is not None and not p.super_user:
            click.echo(f"  redis: {' '.join(p.redis)}")
