"""The ``streaminfer`` command: the root group and its entry point; each command group
lives in its own module (dev, dev_secrets, traffic, serve, ops, models, chaos, plan, keys, access,
retrain)."""

from __future__ import annotations

import sys

import click

from stream.cli.access import acls
from stream.cli.chaos import chaos
from stream.cli.dev import dev
from stream.cli.dev_secrets import dev_secrets  # noqa: F401 - registers `dev secrets`
from stream.cli.keys import field_keys
from stream.cli.models import backup, models, restore
from stream.cli.ops import demo, dlq, regions, status
from stream.cli.plan import plan
from stream.cli.retrain import labels, retrain
from stream.cli.serve import features, worker
from stream.cli.traffic import answers, check, consume, produce, topics
from stream.exceptions import StreaminferError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                "auto_envvar_prefix": "STREAMINFER"})
@click.version_option(package_name="streaminfer", prog_name="streaminfer")
def cli() -> None:
    """streaminfer: Kafka-native ML inference that keeps answering while parts fail.

    Every flag has a STREAMINFER_* environment twin. `streaminfer dev up` writes the
    local cluster's settings to ~/.streaminfer/dev.env, which every command reads.
    """


for command in (dev, topics, produce, consume, answers, check, worker, dlq, features, status,
                regions, demo, models, backup, restore, chaos, plan, field_keys, acls, labels,
                retrain):
    cli.add_command(command)


def main() -> None:
    """Console entry point: typed errors become one clear line and exit code 2."""
    try:
        cli(standalone_mode=True)
    except StreaminferError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
