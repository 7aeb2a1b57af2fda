"""``streaminfer models ...``, ``backup`` and ``restore``: the model lifecycle commands."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from stream.cli.options import CONNECTION, TOPICS, resolve, settings_options
from stream.connect.reachability import require_kafka

REGISTRY = ("registry_dir", "model_trusted_keys", "model_require_signature")


@click.group()
def models() -> None:
    """The model registry and which versions serve: promote, canary, shadow, rollback."""


@models.command("publish")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, show_envvar=True, help="Model name requests ask for.")
@click.option("--version", "version", required=True, show_envvar=True, help="New version label.")
@click.option("--tag", "tags", multiple=True, show_envvar=True, help="key=value (repeatable).")
@click.option("--sign-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, show_envvar=True,
              help="Sign the version's manifest with this Ed25519 private key (PEM; "
                   "`streaminfer models keygen` makes one).")
@settings_options("registry_dir", "log_level")
def models_publish(path: Path, name: str, version: str, tags: tuple[str, ...],
                   sign_key: Path | None, **kwargs: Any) -> None:
    """Publish the model directory PATH as NAME/VERSION (checked, hashed, read-only,
    optionally signed)."""
    from processors.registry.directory import DirectoryRegistry

    s = resolve(kwargs, ("registry_dir", "log_level"))
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{tag!r} is not key=value", param_hint="--tag")
        parsed[key] = value
    info = DirectoryRegistry(s.registry_path).publish(path, name, version, parsed, sign_key)
    signed = "" if sign_key is None else ", signed"
    click.echo(f"published {info.name} v{info.version} ({len(info.files)} files, model sha256 "
               f"{info.content_hash[:12]}{signed}) in {s.registry_path}")


@models.command("keygen")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, show_envvar=True,
              help="Where to write signing.key (private, mode 0600) and signing.pub.")
def models_keygen(out_dir: Path) -> None:
    """Make an Ed25519 key pair for signing model versions: publish with --sign-key
    signing.key; give workers --model-trusted-keys signing.pub."""
    from processors.registry.signing import generate

    out_dir.mkdir(parents=True, exist_ok=True)
    private, public = out_dir / "signing.key", out_dir / "signing.pub"
    if private.exists():
        raise click.ClickException(f"{private} exists: keep it or move it away first")
    kid = generate(private, public)
    click.echo(f"wrote {private} (keep it secret) and {public}; key id {kid}")


def _change(kwargs: dict[str, Any], name: str, action: str, verify: str | None = None,
            **change: Any) -> dict[str, Any]:
    from stream.lifecycle.control import change as apply_change
    from stream.lifecycle.registry import registry_of

    s = resolve(kwargs, CONNECTION, REGISTRY)
    require_kafka(s)
    if verify is not None:
        registry_of(s).fetch(name, verify)  # refuse unknown, corrupt or badly signed versions
    return apply_change(s, name, action, **change)


def _describe(state: dict[str, Any]) -> str:
    parts = [f"active v{state['active_version']}"]
    if state.get("canary_version"):
        parts.append(f"canary v{state['canary_version']} at {state['canary_share']:.1%}")
    if state.get("shadow_version"):
        parts.append(f"shadow v{state['shadow_version']}")
    if state.get("previous_version"):
        parts.append(f"previous v{state['previous_version']}")
    return f"{state['model']}: " + ", ".join(parts)


REASON = click.option("--reason", default="", show_envvar=True,
                      help="Why (kept on the control topic and in `models status`).")


@models.command("promote")
@click.argument("name")
@click.argument("version")
@REASON
@settings_options(*CONNECTION, *REGISTRY)
def models_promote(name: str, version: str, reason: str, **kwargs: Any) -> None:
    """Make VERSION the active version of NAME: workers swap at their next batch."""
    click.echo(_describe(_change(kwargs, name, "promote", verify=version, version=version,
                                 reason=reason)))


@models.command("canary")
@click.argument("name")
@click.argument("version", required=False)
@click.option("--share", type=click.FloatRange(0, 1, min_open=True), default=0.1,
              show_default=True, show_envvar=True,
              help="Share of entities (by a stable hash of entity_id) routed to VERSION.")
@click.option("--stop", is_flag=True, help="End the running canary (no VERSION needed).")
@REASON
@settings_options(*CONNECTION, *REGISTRY)
def models_canary(name: str, version: str | None, share: float, stop: bool, reason: str,
                  **kwargs: Any) -> None:
    """Route SHARE of NAME's entities to VERSION; workers judge it against the active
    version and roll it back (or promote it) on their own figures."""
    if stop:
        state = _change(kwargs, name, "canary_stop", reason=reason)
    elif version is None:
        raise click.UsageError("give the canary VERSION, or --stop")
    else:
        state = _change(kwargs, name, "canary", verify=version, version=version, share=share,
                        reason=reason)
    click.echo(_describe(state))


@models.command("shadow")
@click.argument("name")
@click.argument("version", required=False)
@click.option("--stop", is_flag=True, help="End shadow scoring (no VERSION needed).")
@REASON
@settings_options(*CONNECTION, *REGISTRY)
def models_shadow(name: str, version: str | None, stop: bool, reason: str,
                  **kwargs: Any) -> None:
    """Score what the active version answers with VERSION too, off the critical path;
    its scores and differences go to <ns>.shadow and the metrics."""
    if stop:
        state = _change(kwargs, name, "shadow_stop", reason=reason)
    elif version is None:
        raise click.UsageError("give the shadow VERSION, or --stop")
    else:
        state = _change(kwargs, name, "shadow", verify=version, version=version, reason=reason)
    click.echo(_describe(state))


@models.command("rollback")
@click.argument("name")
@REASON
@settings_options(*CONNECTION, *REGISTRY)
def models_rollback(name: str, reason: str, **kwargs: Any) -> None:
    """End a running canary of NAME; without one, return to the previous active version."""
    click.echo(_describe(_change(kwargs, name, "rollback", reason=reason)))


def shipped_model_hint() -> str:
    """What a newcomer serves without a registry, and how to publish it."""
    from processors.model import DEFAULT_MODEL_DIR, ModelMetadata

    meta = ModelMetadata.from_file(DEFAULT_MODEL_DIR / "model.json")
    name, version = meta.name, meta.version
    return (f"Workers without --registry-model serve the shipped model {name} v{version} from "
            f"{DEFAULT_MODEL_DIR}. To manage versions, publish and promote it: "
            f"`streaminfer models publish {DEFAULT_MODEL_DIR} --name {name} --version "
            f"{version}` then `streaminfer models promote {name} {version}`, and start "
            f"workers with --registry-model {name}.")


@models.command("list")
@click.option("--name", default=None, show_envvar=True, help="Only this model.")
@settings_options("registry_dir", "log_level")
def models_list(name: str | None, **kwargs: Any) -> None:
    """Published versions with their hash, signature, views and tags (JSON lines)."""
    from processors.registry.directory import DirectoryRegistry

    s = resolve(kwargs, ("registry_dir", "log_level"))
    listed = DirectoryRegistry(s.registry_path).list(name)
    if not listed:
        click.echo(f"no published versions{f' of {name}' if name else ''} in {s.registry_path}. "
                   + shipped_model_hint(), err=True)
    for info in listed:
        click.echo(json.dumps({
            "name": info.name, "version": info.version,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.created_at)),
            "sha256": info.content_hash, "features": len(info.signature["features"]),
            "feature_views": info.feature_views, "tags": info.tags, "metrics": info.metrics}))


@models.command("status")
@click.argument("name")
@click.option("--metrics-url", "metrics_urls", multiple=True, show_envvar=True,
              help="A worker's base URL (http://host:port); repeatable. Workers on this host "
                   "with --health-port are found on their own.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@settings_options(*CONNECTION, *REGISTRY)
def models_status(name: str, metrics_urls: tuple[str, ...], as_json: bool,
                  **kwargs: Any) -> None:
    """Per version of NAME: role, share, requests, errors, fallbacks, p99; the last change."""
    from rich.console import Console

    from stream.lifecycle.version_status import collect, render

    s = resolve(kwargs, CONNECTION, REGISTRY)
    require_kafka(s)
    report = collect(s, name, list(metrics_urls))
    if report["control"] is None and not report["published"]:
        click.echo(f"{name}: no control record and no published version. "
                   + shipped_model_hint(), err=True)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(render(report))


# --- backup and restore ------------------------------------------------------------------
@click.command()
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              show_envvar=True, help="Archive to write (.tar.gz).")
@settings_options(*CONNECTION, *REGISTRY)
def backup(out: Path, **kwargs: Any) -> None:
    """Point-in-time archive of the registry, the control topic, topic configurations and
    consumer group offsets of the namespace (not topic data: that is replication's job)."""
    from stream.tools.backup import write_backup

    s = resolve(kwargs, CONNECTION, REGISTRY)
    require_kafka(s)
    summary = write_backup(s, out)
    click.echo(f"wrote {out}: {summary}")


@click.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True,
              help="Restore offsets even for groups that already have offsets here.")
@settings_options(*CONNECTION, *TOPICS, *REGISTRY)
def restore(archive: Path, force: bool, **kwargs: Any) -> None:
    """Bring a backup into a cluster: topics with their configurations, the control topic's
    state, the registry, then consumer group offsets, so workers resume where they were."""
    from stream.tools.backup import restore_backup

    s = resolve(kwargs, CONNECTION, TOPICS, REGISTRY)
    require_kafka(s)
    for line in restore_backup(s, archive, force=force):
        click.echo(line)
