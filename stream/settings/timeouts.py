"""How long the worker may block, and the check that its timeouts nest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.settings.naming import flag_of

if TYPE_CHECKING:
    from stream.settings.root import Settings


SETTLE_MARGIN_MS = 5_000  # on top of the delivery timeout while settling a batch
CALL_SLACK_MS = 2_000  # a bounded transactional call is given up this long after its timeout
EOS_RECOVERY_STEPS = 3  # commit, then abort (or fence), then a new producer's init_transactions
LONGEST_UNBEATEN_MS = 5_000  # a recovering worker beats its watchdog at least this often
ONE_BATCH_MS = 1_000  # computing one batch, between two beats


def blocking_budget_ms(settings: Settings) -> int:
    """The longest the worker loop (or its revoke callback) blocks without polling:
    at-least-once waits for a batch's delivery reports (delivery timeout + margin);
    exactly-once commits a transaction and, if that fails, aborts it or fences it by
    recreating the producer (whose ``init_transactions`` is bounded by one more
    transaction timeout): three transaction timeouts, each call given up
    ``CALL_SLACK_MS`` after its own timeout (stream.worker.exactly_once)."""
    if settings.guarantee == "exactly-once":
        return EOS_RECOVERY_STEPS * (settings.transaction_timeout_ms + CALL_SLACK_MS)
    return settings.delivery_timeout_ms + SETTLE_MARGIN_MS


def timeout_chain(s: Settings) -> list[str]:
    """What is wrong with the timeouts, each naming the settings and values that work.

    The chain (all milliseconds)::

        commit_interval < session_timeout <= max_poll_interval
        blocking budget + 5000 <= max_poll_interval, where the budget is
            at-least-once: delivery_timeout + 5000
            exactly-once:  3 * (transaction_timeout + 2000): commit, then abort or
                           fence, then the new producer's init_transactions
        exactly-once: commit_interval < transaction_timeout
            (and the producer's delivery timeout is capped at the transaction timeout)
        watchdog > max(batch_max_linger, 5000) + 1000: the longest the loop goes
            without beating the liveness watchdog, waiting on a batch or recovering
            (every recovery step beats it at least every 5 s), plus one batch's work
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
            most = ((s.max_poll_interval_ms - SETTLE_MARGIN_MS) // EOS_RECOVERY_STEPS
                    - CALL_SLACK_MS)
            fix = f"lower {flag_of('transaction_timeout_ms')} to at most {most}"
            what = (f"{EOS_RECOVERY_STEPS} x (transaction_timeout_ms "
                    f"({s.transaction_timeout_ms}) + {CALL_SLACK_MS}) (commit, abort, a new "
                    f"producer)")
        else:
            fix = (f"lower {flag_of('delivery_timeout_ms')} to at most "
                   f"{s.max_poll_interval_ms - 2 * SETTLE_MARGIN_MS}")
            what = f"delivery_timeout_ms ({s.delivery_timeout_ms}) + {SETTLE_MARGIN_MS}"
        out.append(f"{what} + {SETTLE_MARGIN_MS} must be <= max_poll_interval_ms "
                   f"({s.max_poll_interval_ms}), or a batch waiting on a slow broker loses the "
                   f"group's partitions mid-wait: {fix}, or raise "
                   f"{flag_of('max_poll_interval_ms')} to at least {budget + SETTLE_MARGIN_MS}")
    unbeaten = max(s.batch_max_linger_ms, LONGEST_UNBEATEN_MS) + ONE_BATCH_MS
    if s.watchdog_s * 1000 <= unbeaten:
        out.append(f"watchdog_s ({s.watchdog_s:g}) must be > {unbeaten / 1000:g}: the loop may "
                   f"wait that long between beats (a batch's linger, a recovery step) and "
                   f"the liveness probe would restart a working worker; raise "
                   f"{flag_of('watchdog_s')} above {unbeaten / 1000:g}")
    if s.guarantee == "exactly-once" and s.commit_interval_ms >= s.transaction_timeout_ms:
        out.append(f"commit_interval_ms ({s.commit_interval_ms}) must be < "
                   f"transaction_timeout_ms ({s.transaction_timeout_ms}): a transaction must "
                   f"commit before the broker aborts it; lower {flag_of('commit_interval_ms')}")
    return out
