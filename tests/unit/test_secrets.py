"""Secrets reach worker processes intact and are never shown."""

from __future__ import annotations

import multiprocessing as mp

import pytest
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


def test_urls_are_shown_without_their_passwords() -> None:
    from stream.connect.exposure import redact_url

    assert redact_url("redis://app:s3cret@redis.internal:6380/2") == \
        "redis://app:***@redis.internal:6380/2"
    assert redact_url("rediss://:s3cret@[::1]:6379/0") == "rediss://:***@[::1]:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_cleartext_to_another_host_is_warned_about_loopback_is_not() -> None:
    from stream.connect.exposure import cleartext_warnings, is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("10.0.0.5", "kafka-0", "example.com"))
    local = Settings(bootstrap_servers="127.0.0.1:9092,localhost:9093",
                     redis_url="redis://:pw@127.0.0.1:6379/0")
    assert cleartext_warnings(local) == []
    remote = Settings(bootstrap_servers="127.0.0.1:9092,kafka-1:9092",
                      redis_url="redis://app:pw@cache.internal:6379/0")
    kafka, redis_line = cleartext_warnings(remote)
    assert "Kafka at kafka-1:9092 is reached without TLS" in kafka
    assert "127.0.0.1" not in kafka
    assert "redis://app:***@cache.internal:6379/0" in redis_line
    assert "its password and data" in redis_line
    assert "pw" not in redis_line.replace("password", "")
    tls = Settings(bootstrap_servers="kafka-1:9093", security_protocol="SSL",
                   redis_url="rediss://cache.internal:6379/0")
    assert cleartext_warnings(tls) == []
    sasl = Settings(bootstrap_servers="kafka-1:9092", security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p")
    assert "SASL credentials and data" in cleartext_warnings(sasl, redis=False)[0]


@pytest.mark.parametrize(("flag", "instead"), [
    ("--sasl-password", "--sasl-password-file FILE or the environment variable "
                        "STREAMINFER_SASL_PASSWORD"),
    ("--redis-password", "--redis-password-file FILE or the environment variable "
                         "STREAMINFER_REDIS_PASSWORD"),
    ("--ssl-key-password", "the environment variable STREAMINFER_SSL_KEY_PASSWORD"),
])
def test_a_secret_given_as_a_flag_is_refused_naming_what_to_use_instead(
        flag: str, instead: str) -> None:
    """Issue 34, item 12: a command line is visible to every user in `ps`."""
    from click.testing import CliRunner

    from stream.cli.main import cli

    command = ["features", "run"] if flag == "--redis-password" else ["topics", "list"]
    out = CliRunner().invoke(cli, [*command, flag, "hunter2"])
    assert out.exit_code == 2
    assert "visible to every user in `ps`" in out.output
    assert instead in " ".join(out.output.split())
    assert "hunter2" not in out.output


def test_a_secret_from_the_environment_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from stream.cli.main import cli

    monkeypatch.setenv("STREAMINFER_SASL_PASSWORD", "from-env")
    out = CliRunner().invoke(cli, ["topics", "list", "--bootstrap-servers", "127.0.0.1:1",
                                   "--connect-timeout-s", "0.5"])
    assert "visible to every user" not in out.output
    assert "did not answer" in str(out.exception)  # it got as far as connecting
