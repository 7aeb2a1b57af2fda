"""Typed settings: env twins, precedence, and errors that name the bad setting."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from stream.cli.main import cli
from stream.connect.kafka_config import worker_consumer, worker_producer
from stream.exceptions import ConfigurationError
from stream.settings import Settings, load_settings


def test_environment_variables_set_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMINFER_BATCH_MAX_RECORDS", "64")
    monkeypatch.setenv("STREAMINFER_GUARANTEE", "exactly-once")
    s = load_settings()
    assert s.batch_max_records == 64
    assert s.guarantee == "exactly-once"


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMINFER_NAMESPACE", "from-env")
    assert load_settings(namespace="from-flag").namespace == "from-flag"
    assert load_settings(namespace=None).namespace == "from-env"


def test_bad_value_names_setting_flag_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMINFER_BATCH_MAX_RECORDS", "lots")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    text = str(info.value)
    assert "batch_max_records" in text
    assert "--batch-max-records" in text
    assert "STREAMINFER_BATCH_MAX_RECORDS" in text
    assert "'lots'" in text


def test_min_isr_above_replication_factor_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"min_insync_replicas \(3\) must be <="):
        load_settings(replication_factor=2, min_insync_replicas=3)


def test_sasl_needs_credentials() -> None:
    with pytest.raises(ConfigurationError, match="needs sasl_mechanism"):
        load_settings(security_protocol="SASL_SSL")


def test_dev_env_file_is_read_but_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STREAMINFER_HOME", str(tmp_path))
    (tmp_path / "dev.env").write_text("STREAMINFER_BOOTSTRAP_SERVERS=127.0.0.1:1111\n"
                                      "STREAMINFER_REPLICATION_FACTOR=1\n"
                                      "STREAMINFER_MIN_INSYNC_REPLICAS=1\n")
    assert load_settings().bootstrap_servers == "127.0.0.1:1111"
    monkeypatch.setenv("STREAMINFER_BOOTSTRAP_SERVERS", "127.0.0.1:2222")
    assert load_settings().bootstrap_servers == "127.0.0.1:2222"


def test_secret_is_not_shown_in_repr() -> None:
    s = Settings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="u",
                 sasl_password="hunter2")
    assert "hunter2" not in repr(s)


def test_librdkafka_config_for_each_guarantee() -> None:
    alo = load_settings()
    consumer = worker_consumer(alo)
    assert consumer["enable.auto.commit"] is False
    assert consumer["partition.assignment.strategy"] == "cooperative-sticky"
    producer = worker_producer(alo, "w")
    assert producer["acks"] == "all"
    assert producer["enable.idempotence"] is True
    assert "transactional.id" not in producer
    eos_settings = load_settings(guarantee="exactly-once")
    eos = worker_producer(eos_settings, "w")
    # Stable across starts and producer recreations: a restart fences its predecessor.
    assert eos["transactional.id"] == "streaminfer.inference.w"
    assert worker_producer(eos_settings, "w")["transactional.id"] == eos["transactional.id"]
    assert eos["delivery.timeout.ms"] <= eos["transaction.timeout.ms"]
    assert "group.instance.id" not in worker_consumer(alo, "w")  # pid-based id: not stable
    static = worker_consumer(alo, "w-0", stable_id=True)
    assert static["group.instance.id"] == "streaminfer.inference.w-0"
    off = worker_consumer(load_settings(static_membership=False), "w-0", stable_id=True)
    assert "group.instance.id" not in off


def test_defaults_satisfy_the_timeout_chain() -> None:
    from stream.settings import blocking_budget_ms

    for guarantee in ("at-least-once", "exactly-once"):
        s = load_settings(guarantee=guarantee)
        assert blocking_budget_ms(s) + 5000 <= s.max_poll_interval_ms
        assert worker_consumer(s)["max.poll.interval.ms"] == s.max_poll_interval_ms


@pytest.mark.parametrize(("overrides", "names"), [
    ({"delivery_timeout_ms": 120_000, "max_poll_interval_ms": 60_000},
     ["delivery_timeout_ms (120000)", "--delivery-timeout-ms to at most 50000",
      "--max-poll-interval-ms to at least 130000"]),
    ({"guarantee": "exactly-once", "transaction_timeout_ms": 60_000},
     ["3 x (transaction_timeout_ms (60000) + 2000)", "--transaction-timeout-ms to at most 36333"]),
    ({"guarantee": "exactly-once", "transaction_timeout_ms": 37_000},
     ["3 x (transaction_timeout_ms (37000) + 2000)", "--max-poll-interval-ms to at least 122000"]),
    ({"watchdog_s": 4}, ["watchdog_s (4) must be > 6", "--watchdog-s above 6"]),
    ({"session_timeout_ms": 30_000, "max_poll_interval_ms": 20_000, "delivery_timeout_ms": 5000},
     ["session_timeout_ms (30000) must be <= max_poll_interval_ms (20000)"]),
    ({"commit_interval_ms": 10_000}, ["commit_interval_ms (10000) must be < session_timeout_ms"]),
    ({"guarantee": "exactly-once", "commit_interval_ms": 5000, "transaction_timeout_ms": 4000},
     ["must commit before the broker aborts it"]),
])
def test_contradicting_timeouts_are_refused_naming_settings_and_values_that_work(
        overrides: dict[str, object], names: list[str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_settings(**overrides)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("command", [["worker"], ["produce"], ["consume"], ["topics", "ensure"],
                                     ["demo"], ["dev", "up"]])
def test_every_flag_shows_its_environment_twin(command: list[str]) -> None:
    cmd: click.Command = cli
    for name in command:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert param.show_envvar, param.name
        envvar = param.envvar or f"STREAMINFER_{'_'.join(command).upper()}_{(param.name or '').upper()}"
        assert isinstance(envvar, str)
        assert envvar.startswith("STREAMINFER_")
        assert f"env var: {envvar}" in text, f"{param.opts[0]} does not show {envvar}"


def test_cli_reports_bad_settings_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMINFER_PARTITIONS", "0")
    result = CliRunner().invoke(cli, ["topics", "ensure"])
    assert result.exit_code != 0
    assert "partitions (--partitions / STREAMINFER_PARTITIONS)" in str(result.exception)


def test_cluster_ids_never_start_with_a_dash() -> None:
    from stream.devcluster.cluster import new_cluster_id

    ids = [new_cluster_id() for _ in range(3000)]  # ~1 in 64 would, unchecked
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_regions_parse_in_preference_order_and_refuse_bad_specs() -> None:
    import pytest

    from stream.exceptions import ConfigurationError
    from stream.regions.failover import parse_regions

    assert list(parse_regions("east=a:1,b:2; west=c:3").items()) == [("east", "a:1,b:2"),
                                                                      ("west", "c:3")]
    for bad, why in (("east", "not name=host:port"), ("east=a:1;east=b:2", "listed twice"),
                     ("", "is empty")):
        with pytest.raises(ConfigurationError, match=why):
            parse_regions(bad)


def test_mm2_properties_replicate_the_namespace_both_ways_with_offset_sync() -> None:
    from stream.devcluster.regions import mm2_properties

    text = mm2_properties("ns.x", {"east": "east-kafka-1:19092", "west": "west-kafka-1:19092"})
    lines = set(text.splitlines())
    assert {"clusters = east, west", "east->west.enabled = true", "west->east.enabled = true",
            r"east->west.topics = ns\.x(-chaos-[a-z0-9-]+)?\.(requests|predictions|dlq|models)",
            "sync.group.offsets.enabled = true", "emit.checkpoints.enabled = true",
            "east.bootstrap.servers = east-kafka-1:19092"} <= lines
    # the namespace's topics and those of its chaos scenarios, nothing else
    topics = re.compile(text.split("east->west.topics = ")[1].splitlines()[0])
    assert topics.fullmatch("ns.x.requests")
    assert topics.fullmatch("ns.x-chaos-region-stop-1a2b3c.dlq")
    assert not topics.fullmatch("nsAx.requests")
    assert not topics.fullmatch("ns.x.other.requests")
    assert not topics.fullmatch("ns.x-other.requests")


def test_mirrormaker_heartbeat_values_decode() -> None:
    import struct

    import pytest

    from stream.regions.replication_status import heartbeat_timestamp

    assert heartbeat_timestamp(struct.pack(">hq", 0, 1_795_000_000_123)) == 1_795_000_000_123
    with pytest.raises(ValueError, match="version 3"):
        heartbeat_timestamp(struct.pack(">hq", 3, 1))


def test_every_setting_belongs_to_exactly_one_section_and_keeps_its_flat_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.settings import SECTIONS, section_of

    per_section = [f for cls in SECTIONS.values() for f in cls.model_fields]
    assert sorted(per_section) == sorted(Settings.model_fields)  # none twice, none outside
    assert section_of("commit_interval_ms") == "worker"
    assert section_of("redis_url") == "features"
    assert section_of("sasl_username") == "security"
    monkeypatch.setenv("STREAMINFER_BATCH_MAX_RECORDS", "77")
    monkeypatch.setenv("STREAMINFER_REGION_LOOKBACK_S", "12.5")
    s = Settings()
    assert (s.batch_max_records, s.region_lookback_s) == (77, 12.5)
