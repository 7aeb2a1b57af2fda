"""Click options generated from Settings fields, so every flag has its env twin.

A flag's help shows the field's description, its default and its ``STREAMINFER_*``
variable. Flags default to None: unset flags leave the value to the environment,
the dev env file or the default (see stream.settings.load_settings).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import SecretStr

from stream.observability.logsetup import configure
from stream.settings import Settings, env_of, flag_of, load_settings

F = TypeVar("F", bound=Callable[..., Any])


def _click_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)])
    if args and origin is not typing.Literal:  # Optional[X] / X | None
        return _click_type(args[0])
    if annotation is int:
        return int
    if annotation is float:
        return float
    if annotation is Path:
        return click.Path(path_type=Path)
    if annotation is SecretStr:
        return str
    return str


def _secret(name: str) -> bool:
    """Whether the field holds a secret (SecretStr): environment or file only."""
    return SecretStr in typing.get_args(Settings.model_fields[name].annotation)


def _no_secret_flags(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Refuse a secret given as a flag: it would be visible in `ps` and shell history."""
    from click.core import ParameterSource

    name = param.name or ""
    if value is not None and ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE:
        file_field = f"{name}_file"
        instead = (f"{flag_of(file_field)} FILE or " if file_field in Settings.model_fields
                   else "")
        raise click.BadParameter(
            f"a secret on the command line is visible to every user in `ps` and stays in "
            f"the shell's history: use {instead}the environment variable {env_of(name)} "
            "instead", ctx=ctx, param=param)
    return value


def settings_options(*fields: str) -> Callable[[F], F]:
    """Add one option per named Settings field. Secrets (SecretStr fields) are read from
    their environment variable only: the flag exists to name it in --help and refuses a
    value given on the command line."""
    def decorate(func: F) -> F:
        for name in reversed(fields):
            info = Settings.model_fields[name]
            default = info.default if info.default_factory is None else "(see description)"
            shown = "unset" if default is None else default
            help_text = f"{info.description} [default: {shown}]"
            if _secret(name):
                func = click.option(
                    flag_of(name), name, type=str, default=None, envvar=env_of(name),
                    show_envvar=True, callback=_no_secret_flags, expose_value=True,
                    help=f"{info.description} Environment variable only: as a flag it is "
                         "refused (visible in ps).")(func)
                continue
            if info.annotation is bool:
                option = click.option(
                    f"{flag_of(name)}/--no-{name.replace('_', '-')}", name, default=None,
                    envvar=env_of(name), show_envvar=True, help=help_text)
            else:
                option = click.option(
                    flag_of(name), name, type=_click_type(info.annotation), default=None,
                    envvar=env_of(name), show_envvar=True, help=help_text)
            func = option(func)
        return func
    return decorate


KAFKA_SECURITY = ("security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
                  "sasl_password_file", "ssl_ca_location", "ssl_certificate_location",
                  "ssl_key_location", "ssl_key_password", "ssl_endpoint_identification")
REDIS_SECURITY = ("redis_username", "redis_password", "redis_password_file", "redis_ca_file",
                  "redis_cert_file", "redis_key_file")
HTTP_ACCESS = ("health_token", "health_token_file", "health_tls_cert", "health_tls_key",
               "health_tls_client_ca")
CONNECTION = ("bootstrap_servers", *KAFKA_SECURITY, "namespace", "connect_timeout_s",
              "log_level", "log_format")
TOPICS = ("partitions", "replication_factor", "min_insync_replicas")
WORKER = ("group_id", "guarantee", "batch_max_records", "batch_max_linger_ms", "model_path",
          "onnx_intra_op_threads", "onnx_inter_op_threads", "onnx_allow_spinning", "processes",
          "stop_grace_s", "autoscale", "autoscale_lag_threshold", "autoscale_activation_lag",
          "autoscale_interval_s", "autoscale_up_window_s", "autoscale_down_window_s",
          "autoscale_metrics_port", "max_message_bytes", "max_headers", "max_features",
          "max_string_bytes", "field_keys_file", "require_sealed", "replay_trusted_keys",
          "worker_id", "static_membership", "transaction_timeout_ms", "session_timeout_ms",
          "max_poll_interval_ms", "fetch_min_bytes",
          "commit_interval_ms", "producer_linger_ms", "producer_compression", "delivery_timeout_ms",
          "health_port", "health_host", *HTTP_ACCESS, "watchdog_s", "probe_interval_s", "stats_interval_ms",
          "metrics_created_series",
          "breaker_failures", "breaker_open_s", "lkg_refresh_s", "shed_max_lag", "shed_min_priority",
          "chaos_file", "redis_url", "redis_mode", "redis_sentinels", "redis_master_name",
          *REDIS_SECURITY,
          "feature_cache_size", "feature_cache_ttl_s",
          "feature_precedence", "registry_model", "registry_dir", "dedupe_ttl_s", "canary_window_s",
          "canary_min_samples", "canary_max_error_rate", "canary_max_fallback_rate",
          "canary_max_p99_ratio", "canary_max_psi", "canary_promote_after_s", "canary_judge",
          "record_inputs", "model_trusted_keys", "model_require_signature")
DEV = ("kafka_image", "redis_image")
SEALING = ("field_keys_file", "seal_fields", "model_path")  # producers of requests
REGIONS = ("regions", "region_down_after_s", "region_failback_after_s")
WORKER_REGIONS = (*REGIONS, "region_redis", "region_lookback_s")
REDIS = ("redis_url", "redis_mode", "redis_sentinels", "redis_master_name", *REDIS_SECURITY)


def pick(kwargs: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The settings among a command's keyword arguments."""
    return {k: kwargs.pop(k) for k in names if k in kwargs}


def resolve(kwargs: dict[str, Any], *groups: tuple[str, ...]) -> Settings:
    """Settings from a command's flags (the named groups), env and the dev env file;
    configures logging as they say."""
    given: dict[str, Any] = {}
    for group in groups:
        given.update(pick(kwargs, group))
    settings = load_settings(**given)
    configure(settings.log_level, settings.log_format)
    from stream.connect.exposure import warn_cleartext

    warn_cleartext(settings, kafka=CONNECTION in groups,
                   redis=REDIS in groups or "redis_url" in given)
    return settings
