"""``streaminfer dev secrets``: the secure compose stack's CA, certificates and passwords
(compose/docker-compose.secure.yml; :mod:`stream.devcluster.compose_secrets`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from stream.cli.dev import dev, print_env


@dev.command("secrets")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--renew", is_flag=True,
              help="Replace a complete set already in FOLDER (new CA, certificates, "
                   "passwords); `docker compose up` then copies the new one in.")
@click.option("--env", "with_env", is_flag=True,
              help="Print shell exports: STREAMINFER_COMPOSE_SECRETS for compose, and a "
                   "principal's settings for commands on the host.")
@click.option("--as", "principal", default="admin", show_default=True,
              help="With --env: the principal whose settings to print.")
@click.option("--client-cert", is_flag=True,
              help="With --env: Kafka with the principal's client certificate (the "
                   "certificate listener, KAFKA_CERTS_PORT) instead of its SCRAM password.")
@click.option("--namespace", default="streaminfer", show_default=True,
              help="The namespace the Redis users' key patterns name.")
def dev_secrets(folder: Path, renew: bool, with_env: bool, principal: str, client_cert: bool,
                namespace: str) -> None:
    """Make the secure compose stack's material in FOLDER (0700, files 0600; kept when a
    complete set is there): a CA, certificates for Kafka, Redis and the workers' HTTPS,
    a password and client certificate per principal, the metrics token, Grafana's admin
    password. Then: docker compose -f compose/docker-compose.secure.yml up -d"""
    from stream.access.declaration import load
    from stream.devcluster.compose_secrets import host_env, make
    from stream.devcluster.progress import say

    if principal not in load().principals:
        raise click.UsageError(f"no principal {principal!r}; declared: "
                               f"{', '.join(load().principals)}")
    made = make(folder.resolve(), namespace, renew)
    say(("made" if made.made else "kept (--renew replaces it)")
        + f": the secure compose stack's material in {made.root}; Grafana's admin password "
        f"is in {made.service('grafana') / 'admin.password'}")
    if with_env:
        env = {"STREAMINFER_COMPOSE_SECRETS": str(made.root)}
        env.update(host_env(made, principal, int(os.environ.get("KAFKA_PORT") or 9092),
                            int(os.environ.get("REDIS_PORT") or 6379), client_cert,
                            int(os.environ.get("KAFKA_CERTS_PORT") or 9094)))
        print_env(env)
