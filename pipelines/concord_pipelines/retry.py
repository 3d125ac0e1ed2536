"""How long to wait before retrying an HTTP request: one policy for every source of this project.

A server's `Retry-After` is a lower bound we honour, never a licence to hammer it: the wait is
always at least the exponential backoff, whatever the header says (0, negative, an HTTP date
already past, garbage), and at most `retry_after_max` however far away the server asks.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from `now`: delta-seconds or an HTTP date (RFC 9110 10.2.3); None if absent or unreadable.

    A date in the past gives a negative number; the caller takes the larger of it and its backoff.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if seconds == seconds and abs(seconds) != float("inf") else None  # NaN / inf: unreadable
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:  # "-0000": HTTP dates are GMT by definition
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() - (time.time() if now is None else now)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, at least as long as the server asked, bounded."""

    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Attempt 0, 1, 2... -> base, 2 base, 4 base... (capped), times a jitter in [0.5, 1)."""
        return min(self.backoff_max, self.backoff_base * 2 ** min(attempt, 32)) * (0.5 + random.random() / 2)

    def delay(self, attempt: int, retry_after: str | None = None, now: float | None = None) -> float:
        asked = retry_after_seconds(retry_after, now)
        backoff = self.backoff(attempt)
        if asked is None or asked <= backoff:
            return backoff
        return min(asked, max(self.retry_after_max, backoff))


class AdaptivePace:
    """Requests in flight, and their pace once the server has said 429: additive increase, multiplicative decrease.

    Until the first 429 only `concurrency` bounds the requests. A 429 sets a pace (a minimum
    interval between request starts) from the rate that was succeeding, and each later 429 (at
    most one per `cut_every` seconds, as a burst of 429s is one signal) slows it by `cut`; every
    success speeds it up a little. A rate-limited API is then used close to its limit with few
    429s, instead of spending every request's retries in a burst. When 429s come whatever the pace
    (a server shedding load at random), the pace settles where a success's 1% speed-up balances them.
    """

    def __init__(self, concurrency: int, cut: float = 1.25, gain: float = 0.99, cut_every: float = 0.3,
                 slowest: float = 1.0) -> None:  # fmt: skip
        self.concurrency = max(1, concurrency)
        self.cut, self.gain, self.cut_every = cut, gain, cut_every
        # Never slower than one request per `slowest` seconds: 429s that are not about our pace (a
        # server shedding load at random) must not slow a run down to nothing.
        self.slowest = slowest
        self._cond = threading.Condition()
        self._inflight = 0
        self.interval = 0.0  # seconds between request starts; 0 until the server pushes back
        self._next_start = 0.0
        self._last_cut = 0.0
        self._successes: deque[float] = deque(maxlen=64)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while self._inflight >= self.concurrency:
                self._cond.wait()
            self._inflight += 1
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self.interval
        try:
            if start > now:
                time.sleep(start - now)
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify()

    def succeeded(self) -> None:
        with self._cond:
            self._successes.append(time.monotonic())
            if self.interval:
                self.interval *= self.gain

    def throttled(self) -> None:
        with self._cond:
            now = time.monotonic()
            if self.interval == 0.0:
                self.interval = 1.0 / max(1.0, self._recent_rate(now))
            elif now - self._last_cut >= self.cut_every:
                self.interval = min(self.slowest, self.interval * self.cut)
            else:
                return
            self._last_cut = now
            self._next_start = max(self._next_start, now + self.interval)

    def _recent_rate(self, now: float) -> float:
        recent = [t for t in self._successes if now - t <= 2.0]
        if len(recent) < 2:
            return 1.0
        return len(recent) / max(now - recent[0], 0.2)
