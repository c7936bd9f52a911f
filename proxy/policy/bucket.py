"""Rate limits: a rate with its burst, and the token bucket that enforces it (clock passed in)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """``per_second`` requests a second on average, up to ``burst`` at once after a pause."""

    per_second: float
    burst: int
    text: str  # as written (``10/s``), for messages

    def share(self, parts: int) -> Rate:
        """One of ``parts`` equal shares (a worker's), the burst rounded down but at least 1:
        together the shares never pass the whole unless the burst is under ``parts``."""
        if parts == 1:
            return self
        return Rate(self.per_second / parts, max(1, self.burst // parts), self.text)


class TokenBucket:
    """Holds up to ``burst`` tokens, refilled at the rate; each request takes one.

    The classic token bucket: a client idle for a while may send ``burst`` requests at once,
    and over time never more than the rate.
    """

    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.tokens = float(rate.burst)
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be (none
        is taken then)."""
        rate = self.rate
        tokens = min(float(rate.burst), self.tokens + (now - self.updated) * rate.per_second)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / rate.per_second
