"""``produce --file``: a bad line names the file, the line and the field, and says how many
requests before it went out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from stream.clients import requests_from_json_lines
from stream.exceptions import ConfigurationError
from stream.tools.producing import send_paced

GOOD = '{"entity_id": "e1", "model": "fraud", "features": {"amount": 12.5}}'


class Collecting:
    """A Sender (stream.tools.producing) that keeps what it is given."""

    def __init__(self) -> None:
        self.sent: list[Mapping[str, Any]] = []
        self.flushed = 0

    def send(self, request: Mapping[str, Any]) -> None:
        self.sent.append(request)

    def flush(self, timeout: float = 60.0) -> None:
        self.flushed += 1


@pytest.mark.parametrize(("line", "problem"), [
    ('{"entity_id": "e1", "model": "fraud", "features": {"amount": "12,5"}}',
     "feature 'amount' must be a number, got '12,5'"),
    ('{"entity_id": "e1", "model": "fraud", "features": {"amount": true}}',
     "feature 'amount' must be a number, got True"),
    ('{"entity_id": "e1", "features": {}}', "missing field 'model'"),
    ("{not json", "not JSON"),
    ("[1, 2]", "expected a JSON object"),
])
def test_a_bad_line_is_named_by_file_line_and_problem(line: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        list(requests_from_json_lines([GOOD, "", line], "reqs.jsonl"))
    assert str(err.value).startswith("reqs.jsonl:3: ")
    assert problem in str(err.value)


def test_a_bad_line_stops_the_run_saying_how_many_went_out_before_it() -> None:
    sender = Collecting()
    lines = [GOOD, GOOD, '{"entity_id": "e1", "model": "fraud", "features": {"x": "?"}}', GOOD]
    with pytest.raises(ConfigurationError) as err:
        send_paced(sender, requests_from_json_lines(lines, "reqs.jsonl"), None, 0)
    assert len(sender.sent) == 2
    assert sender.flushed == 1  # what went out is flushed before stopping
    message = str(err.value)
    assert message.startswith("reqs.jsonl:3: feature 'x' must be a number")
    assert "The 2 requests before it were sent" in message
    assert "tail -n +LINE" in message
