"""Retry decisions: which answers and requests may be sent again, and how long to wait first."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.utils import parsedate_to_datetime

# Answers that say "not now" without the request having run (RFC 6585 section 4, RFC 9110
# section 15.6.4), by the reason label of the retries metric.
RETRY_STATUSES = {429: "throttled", 503: "unavailable"}
CONNECTION = "connection"  # the connection failed before any byte of the answer
CLOCK = "clock"  # a signature refused for a clock this machine has just corrected
# Methods that change nothing (RFC 9110 section 9.2.1): sent again, they do no harm.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Exponential backoff when the upstream names no time: 0.5 s, 1 s, 2 s... up to 8 s, each
# with "equal jitter" (half fixed, half random), so that clients throttled together spread
# out without any of them retrying at once.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
_SECONDS = re.compile(r"[0-9]+")  # delay-seconds = 1*DIGIT, ASCII only (str.isdigit is wider)


def retry_after(value: str | None, now: float) -> float | None:
    """The seconds ``Retry-After`` asks to wait (RFC 9110 section 10.2.3: a number of seconds
    or an HTTP date, compared with ``now``, the answer's own time); None when absent or not
    understood."""
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # not an HTTP date (those are always GMT)
        return None
    return max(0.0, when.timestamp() - now)


def backoff(attempt: int, uniform: Callable[[float, float], float]) -> float:
    """The wait before attempt number ``attempt + 1`` when the upstream named none."""
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** (attempt - 1))
    return delay / 2 + uniform(0.0, delay / 2)


def within_budget(elapsed: float, wait: float, budget: float) -> bool:
    """Whether a retry after ``wait`` more seconds still ends within the budget."""
    return elapsed + wait <= budget
