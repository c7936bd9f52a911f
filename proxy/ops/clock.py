"""Clock skew: estimate this machine's offset from the upstream's Date headers, correct for it."""

from __future__ import annotations

import functools
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime

log = logging.getLogger("proxy.clock")  # the name log lines have always had

# The estimate is the mean of the last few answers without the highest and the lowest: one
# odd Date (say, a response from a cache) cannot move it. Two answers in a row that agree with
# each other and not with the estimate mean a clock was set: the estimate starts over there.
SAMPLES = 8
AGREE = 2.0


@functools.lru_cache(maxsize=8)
def parse_http_date(value: str) -> float | None:
    """An HTTP date (RFC 9110 section 5.6.7) as a timestamp; None when it is not one."""
    # Cached: the upstream's Date changes once a second, parsing it costs more than a lookup.
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # A date without a zone would be read as local time: not an HTTP-date (RFC 9110 5.6.7).
    return parsed.timestamp() if parsed.tzinfo is not None else None


class ClockSkew:
    """This machine's clock minus the upstream's, in whole seconds, and the time to sign with.

    One sign convention everywhere (logs, ``check``, ``/-/health``, metrics): ``offset`` is
    positive when this machine's clock is ahead of the API's, negative when it is behind.

    The vendor warns that signing is sensitive to clock drift; a signature whose Date is off by
    more than the API tolerates is refused with 403. Each answer's ``Date`` (RFC 9110 5.6.7:
    whole seconds, truncated) is compared with the midpoint of our request; the estimate is a
    trimmed mean of recent answers. Past ``threshold`` seconds the proxy signs with the
    corrected time.
    """

    def __init__(
        self,
        threshold: float,
        correct: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.threshold = threshold
        self.correct = correct
        self.clock = clock
        self.estimate: float | None = None  # the upstream's clock minus ours, in seconds
        self.correcting = False
        self._samples: deque[float] = deque(maxlen=SAMPLES)

    @property
    def offset(self) -> int:
        """This machine's clock minus the API's, in whole seconds (0 before any answer)."""
        return -round(self.estimate) if self.estimate is not None else 0

    def now(self) -> float:
        """The time to put in Date and sign with."""
        now = self.clock()
        return now - self.offset if self.correcting else now

    def observe(
        self, date: str | None, sent: float, received: float, age: str | None = None
    ) -> None:
        """Take one answer's Date header; ``sent`` and ``received`` are our clock's times.

        An answer with an ``Age`` header came from a cache: its Date is not the server's now.
        """
        if not date or age is not None or received - sent > 2 * max(self.threshold, AGREE):
            # The midpoint is off by up to half the round trip: a slow exchange could start a
            # correction on its own.
            return
        upstream = parse_http_date(date)
        if upstream is None:
            return
        # The header truncates to the second: on average the true time is half a second later.
        sample = upstream + 0.5 - (sent + received) / 2
        samples = self._samples
        if (
            self.estimate is not None
            and samples
            and abs(sample - samples[-1]) <= AGREE
            and abs(sample - self.estimate) > max(self.threshold, AGREE)
        ):
            previous = samples[-1]
            samples.clear()
            samples.append(previous)
        samples.append(sample)
        ordered = sorted(samples)
        kept = ordered[1:-1] if len(ordered) >= 3 else ordered
        self.estimate = statistics.fmean(kept)
        self._update()

    def refused(self, date: str | None, sent: float, received: float, signed: float) -> bool:
        """A signature was refused (401/403): whether the answer's ``Date`` shows that the
        time signed (``signed``, taken at ``sent``) was off the API's by more than the
        threshold. If so the estimate starts over from this answer and the time to sign with
        is corrected at once, so that the request can be signed again and sent once more.

        Never with correction turned off, nor from an answer too slow to date the API's clock.
        """
        if not self.correct or not date or received - sent > 2 * max(self.threshold, AGREE):
            return False
        upstream = parse_http_date(date)
        if upstream is None:
            return False
        api = upstream + 0.5  # the header truncates to the second
        midpoint = (sent + received) / 2
        if abs(signed + (midpoint - sent) - api) <= self.threshold:
            return False  # the clock was right: the refusal is about something else
        self._samples.clear()
        self._samples.append(api - midpoint)
        self.estimate = api - midpoint
        self._update()
        return True

    def _update(self) -> None:
        large = abs(self.offset) > self.threshold
        if large and self.correct and not self.correcting:
            self.correcting = True
            log.warning(
                "this machine's clock is %+d s off the upstream's; signing with the corrected "
                "time (fix the clock, e.g. enable NTP; --no-clock-correction turns this off)",
                self.offset,
            )
        elif self.correcting and not large:
            self.correcting = False
            log.warning("clock offset is now %+d s: no longer correcting the time", self.offset)

    def refusal_hints(
        self, status: int, signed_corrected: bool | None = None, certain: str = ""
    ) -> str:
        """Likely causes of a 401 or 403 from the API, most likely first; no secret in them.

        ``signed_corrected`` says whether the refused request was signed with the corrected
        time (default: whether correction is on now). ``certain`` is a cause the caller knows
        of (a REST request without a developer key): it comes first.
        """
        causes = [certain] if certain else []
        corrected = self.correcting if signed_corrected is None else signed_corrected
        if abs(self.offset) > self.threshold and not corrected:
            causes.append(f"this machine's clock is {self.offset:+d} s off the API's")
        if status == 401:
            # The key id and the secret are each well formed (checked when loaded): a secret
            # copied from another key is the usual mistake.
            causes.append(
                "the secret does not belong to this key id (the profile's "
                "R3_SECRET_ACCESS_KEY must be the one shown with this access key)"
            )
            causes.append("the request was not signed as the API expects")
        causes.append("the profile's key is not the one you meant (check --profile)")
        causes.append("the access key is disabled or deleted (check the Remote.It account page)")
        return "; ".join(causes)
