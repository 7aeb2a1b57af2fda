"""Paced sending with progress, shared by ``streaminfer produce`` and the demo."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stream.exceptions import ConfigurationError


class Sender(Protocol):
    """RequestProducer or FailoverProducer."""

    def send(self, request: Mapping[str, Any]) -> None: ...

    def flush(self, timeout: float = 60.0) -> None: ...


def progress_bar(transient: bool = False) -> Progress:
    """A progress bar on stderr with count, rate and elapsed time."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), transient=transient)


def send_paced(producer: Sender, requests: Iterable[Mapping[str, Any]], total: int | None,
               rate: float, label: str = "producing", ids: list[str] | None = None) -> int:
    """Send requests at ``rate``/s (0 = as fast as possible); return how many were sent.
    Their request ids are appended to ``ids`` when given (memory grows with the stream:
    the demo wants them, ``streaminfer produce`` does not keep them).

    With a rate, ``created_at`` is the request's *intended* send time, so latency
    measured from it includes any queueing the sender itself suffered.
    """
    sent = 0
    start = time.monotonic()
    wall0 = time.time_ns() // 1_000_000
    with progress_bar() as bar:
        task = bar.add_task(label, total=total, rate="")
        try:
            for i, request in enumerate(requests):
                req = dict(request)
                if rate > 0:
                    due = start + i / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    req["created_at"] = wall0 + int(i * 1000 / rate)
                producer.send(req)
                sent += 1
                if ids is not None:
                    ids.append(req["request_id"])
                if i % 200 == 0:
                    elapsed = max(time.monotonic() - start, 1e-6)
                    bar.update(task, completed=i + 1, rate=f"{(i + 1) / elapsed:,.0f}/s")
        except ConfigurationError as exc:  # a bad input line: say what already went out
            producer.flush()
            raise ConfigurationError(
                f"{exc}. The {sent} requests before it were sent (and flushed); fix the "
                "line and send the rest from it (`tail -n +LINE FILE | streaminfer produce "
                "--file -`)") from exc
        producer.flush()
        elapsed = max(time.monotonic() - start, 1e-6)
        bar.update(task, completed=sent, rate=f"{sent / elapsed:,.0f}/s")
    return sent
