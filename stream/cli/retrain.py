"""``streaminfer labels ...`` and ``streaminfer retrain ...``: ground truth in, new model
versions out through the gates and the canary (docs/retraining.md)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from stream.cli.options import CONNECTION, resolve, settings_options
from stream.connect.reachability import require_kafka

REGISTRY = ("registry_dir", "model_trusted_keys", "model_require_signature", "model_path")
RETRAIN = ("retrain_window_h", "retrain_scheduled_job", "retrain_keep_runs_h",
           "retrain_label_wait_s", "retrain_min_labels", "retrain_holdout",
           "retrain_epochs", "retrain_seed", "retrain_hidden", "retrain_min_auc", "retrain_max_auc_drop",
           "retrain_max_logloss_rise", "retrain_max_calibration_rise", "retrain_latency_ms_1",
           "retrain_latency_ms_256", "retrain_max_model_bytes", "retrain_fairness_feature",
           "retrain_max_fairness_gap", "retrain_canary_share", "retrain_dir",
           "retrain_sign_key", "canary_max_psi")
TRIGGERS = ("retrain_every_s", "retrain_on_labels", "retrain_on_psi", "retrain_check_s")


def _require_trainer() -> None:
    """Training needs the retrain extra (the worker image has it; a bare install does not)."""
    try:
        import skl2onnx  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(f"retraining needs scikit-learn and skl2onnx ({exc}): "
                                   "pip install 'streaminfer[retrain]'") from exc


@click.group()
def labels() -> None:
    """Ground-truth labels to <ns>.feedback (what retraining learns from)."""


@labels.command("send")
@click.argument("source", type=click.File("r"), default="-")
@settings_options(*CONNECTION)
def labels_send(source: Any, **kwargs: Any) -> None:
    """Send labels from JSON lines (SOURCE, default stdin): {"request_id": ..., "entity_id":
    ..., "label": 0 or 1, "label_time": epoch ms (default now), "source": ...}."""
    from stream.exceptions import ConfigurationError
    from stream.retrain.label_client import checked_label, send_all

    s = resolve(kwargs, CONNECTION)
    require_kafka(s)
    rows = []
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        where = f"{getattr(source, 'name', '<stdin>')}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{where}: not JSON ({exc.msg}); one label per line") from exc
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{where}: a label is a JSON object")
        rows.append(checked_label(raw, where))
    click.echo(f"sent {send_all(s, rows)} labels to {s.feedback_topic}")


@labels.command("synthesize")
@click.option("--drift", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="0: labels follow the rule the shipped model learned; 1: a later pattern.")
@click.option("--shuffle", is_flag=True, help="Pair outcomes with the wrong requests (a broken "
                                              "labelling source; what the gates must refuse).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="Label at most this many requests.")
@click.option("--since-ms", type=int, default=0, help="Only requests answered since (epoch ms).")
@settings_options(*CONNECTION)
def labels_synthesize(drift: float, shuffle: bool, seed: int, limit: int | None, since_ms: int,
                      **kwargs: Any) -> None:
    """Label the answered requests <ns>.inputs holds with synthetic outcomes (demos, tests)."""
    from stream.retrain.labeller import synthesize

    s = resolve(kwargs, CONNECTION)
    require_kafka(s)
    counts = synthesize(s, drift, seed, shuffle, limit=limit, since_ms=since_ms)
    click.echo(f"labelled {counts['labelled']} requests ({counts['positives']} positive) on "
               f"{s.feedback_topic}; skipped {counts['skipped']}, undecodable "
               f"{counts['undecodable']}")


@click.group()
def retrain() -> None:
    """Train a new version from labels, gate it, release it as a canary."""


@retrain.command("run")
@click.argument("model")
@click.option("--no-release", is_flag=True, help="Train, gate and publish; start no canary.")
@click.option("--until-ms", type=int, default=None,
              help="End of the data window, epoch ms (default now).")
@settings_options(*CONNECTION, *REGISTRY, *RETRAIN)
def retrain_run(model: str, no_release: bool, until_ms: int | None, **kwargs: Any) -> None:
    """One run for MODEL: join labels with served inputs, train (resuming a killed run),
    gate against the active version, publish, and start a passing version as a canary."""
    _require_trainer()
    from stream.retrain.job import retrain_once

    s = resolve(kwargs, CONNECTION, REGISTRY, RETRAIN)
    require_kafka(s)
    outcome = retrain_once(s, model, lambda m: click.echo(m, err=True),
                           release=not no_release, until_ms=until_ms)
    click.echo(json.dumps({"run_id": outcome.run_id, "decision": outcome.decision,
                           "version": outcome.version, "run_dir": str(outcome.run_dir),
                           "reused": outcome.reused}))
    if outcome.decision == "rejected":
        sys.exit(3)


@retrain.command("watch")
@click.argument("model")
@click.option("--max-runs", type=int, default=None, help="Stop after this many runs.")
@settings_options(*CONNECTION, *REGISTRY, *RETRAIN, *TRIGGERS)
def retrain_watch(model: str, max_runs: int | None, **kwargs: Any) -> None:
    """Check the triggers (schedule, new labels, drift) and run when one fires; until
    SIGTERM or Ctrl-C."""
    _require_trainer()
    from stream.retrain.triggers import watch

    s = resolve(kwargs, CONNECTION, REGISTRY, RETRAIN, TRIGGERS)
    require_kafka(s)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        runs = watch(s, model, stop, lambda m: click.echo(m, err=True), max_runs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(f"stopped after {runs} run(s)")


@retrain.command("status")
@click.argument("model")
@click.option("--last", type=int, default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@settings_options("registry_dir")
def retrain_status(model: str, last: int, as_json: bool, **kwargs: Any) -> None:
    """The last runs of MODEL: window, labels, candidate vs active, gates, decision."""
    from processors.registry.directory import DirectoryRegistry
    from processors.retrain.run_report import summary

    s = resolve(kwargs, ("registry_dir",))
    runs = DirectoryRegistry(Path(s.registry_path)).runs(model, last)
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    if not runs:
        click.echo(f"no retraining runs of {model} recorded in {s.registry_path}: "
                   f"`streaminfer retrain run {model}`", err=True)
    for report in runs:
        click.echo(summary(report))
