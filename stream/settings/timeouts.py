"""How long the worker may block, and the check that its timeouts nest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.settings.naming import flag_of

if TYPE_CHECKING:
    from stream.settings.root import Settings


SETTLE_MARGIN_MS = 5_000  # on top of the delivery timeout while settling a batch


def blocking_budget_ms(settings: Settings) -> int:
    """The longest the worker loop (or its revoke callback) blocks without polling:
    at-least-once waits for a batch's delivery reports (delivery timeout + margin);
    exactly-once commits a transaction and, if that fails, aborts it (two transaction
    timeouts)."""
    if settings.guarantee == "exactly-once":
        return 2 * settings.transaction_timeout_ms
    return settings.delivery_timeout_ms + SETTLE_MARGIN_MS


def timeout_chain(s: Settings) -> list[str]:
    """What is wrong with the timeouts, each naming the settings and values that work.

    The chain (all milliseconds)::

        commit_interval < session_timeout <= max_poll_interval
        blocking budget + 5000 <= max_poll_interval, where the budget is
            at-least-once: delivery_timeout + 5000
            exactly-once:  2 * transaction_timeout (commit, then abort or fence)
        exactly-once: commit_interval < transaction_timeout
            (and the producer's delivery timeout is capped at the transaction timeout)
    """
    out: list[str] = []
    if s.session_timeout_ms > s.max_poll_interval_ms:
        out.append(f"session_timeout_ms ({s.session_timeout_ms}) must be <= "
                   f"max_poll_interval_ms ({s.max_poll_interval_ms}): raise "
                   f"{flag_of('max_poll_interval_ms')} to at least {s.session_timeout_ms}")
    if s.commit_interval_ms >= s.session_timeout_ms:
        out.append(f"commit_interval_ms ({s.commit_interval_ms}) must be < session_timeout_ms "
                   f"({s.session_timeout_ms}): lower {flag_of('commit_interval_ms')} to at "
                   f"most {s.session_timeout_ms - 1}")
    budget = blocking_budget_ms(s)
    if budget + SETTLE_MARGIN_MS > s.max_poll_interval_ms:
        if s.guarantee == "exactly-once":
            fix = (f"lower {flag_of('transaction_timeout_ms')} to at most "
                   f"{(s.max_poll_interval_ms - SETTLE_MARGIN_MS) // 2}")
            what = f"2 x transaction_timeout_ms ({s.transaction_timeout_ms})"
        else:
            fix = (f"lower {flag_of('delivery_timeout_ms')} to at most "
                   f"{s.max_poll_interval_ms - 2 * SETTLE_MARGIN_MS}")
            what = f"delivery_timeout_ms ({s.delivery_timeout_ms}) + {SETTLE_MARGIN_MS}"
        out.append(f"{what} + {SETTLE_MARGIN_MS} must be <= max_poll_interval_ms "
                   f"({s.max_poll_interval_ms}), or a batch waiting on a slow broker loses the "
                   f"group's partitions mid-wait: {fix}, or raise "
                   f"{flag_of('max_poll_interval_ms')} to at least {budget + SETTLE_MARGIN_MS}")
    if s.guarantee == "exactly-once" and s.commit_interval_ms >= s.transaction_timeout_ms:
        out.append(f"commit_interval_ms ({s.commit_interval_ms}) must be < "
                   f"transaction_timeout_ms ({s.transaction_timeout_ms}): a transaction must "
                   f"commit before the broker aborts it; lower {flag_of('commit_interval_ms')}")
    return out
