"""Secrets reach worker processes intact and are never shown."""

from __future__ import annotations

import multiprocessing as mp

from pydantic import SecretStr

from stream.settings import Settings, to_env
from stream.worker import supervisor

SECRET = "s3cr3t-pa55"


def sasl_settings() -> Settings:
    return Settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                    sasl_username="worker", sasl_password=SecretStr(SECRET))


def _child_sees(settings: Settings, _index: int) -> None:
    """Stands in for supervisor.run_one: exit 0 only when the secret arrived intact."""
    from stream.connect import kafka_config

    ok = kafka_config.common(settings)["sasl.password"] == SECRET
    raise SystemExit(0 if ok else 3)


def test_a_spawned_worker_process_receives_the_real_password() -> None:
    settings = sasl_settings()
    ctx = mp.get_context("spawn")  # what supervise() uses
    proc = ctx.Process(target=_child_sees, args=supervisor.child_args(settings, 0))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0


def test_secrets_are_masked_when_shown_and_kept_for_subprocess_environments() -> None:
    settings = sasl_settings()
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in settings.model_dump_json()
    assert to_env(settings)["STREAMINFER_SASL_PASSWORD"] == SECRET
