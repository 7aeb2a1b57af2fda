"""Structured logs and rate-limited repeats."""

from __future__ import annotations

import json
import logging

import pytest

from stream.observability.logsetup import JsonFormatter, RateLimitedLog


def test_json_lines_carry_context_fields() -> None:
    record = logging.LogRecord("processors.pipeline", logging.WARNING, __file__, 1,
                               "dead letter at %s", ("decode",), None)
    record.request_id = "r-1"
    record.partition = 3
    record.offset = 42
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "dead letter at decode"
    assert line["level"] == "WARNING"
    assert (line["request_id"], line["partition"], line["offset"]) == ("r-1", 3, 42)
    assert "model_version" not in line


def test_repeats_beyond_the_burst_are_suppressed_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.ratelimit")
    limited = RateLimitedLog(logger, burst=3, period_s=0.0)
    limited.period_s = 3600
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for i in range(50):
            limited.warning("decode", "bad record %d", i)
    assert [r.getMessage() for r in caplog.records] == [f"bad record {i}" for i in range(3)]
    limited.period_s = 0.0
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        limited.warning("decode", "after the window")
    assert "47 more 'decode' messages suppressed" in caplog.records[-2].getMessage()
