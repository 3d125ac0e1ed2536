"""How long to wait before retrying an HTTP request: one policy for every source of this project.

A server's `Retry-After` is a lower bound we honour, never a licence to hammer it: the wait is
always at least the exponential backoff, whatever the header says (0, negative, an HTTP date
already past, garbage), and at most `retry_after_max` however far away the server asks.
"""

from __future__ import annotations

import email.utils
import random
import time
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
