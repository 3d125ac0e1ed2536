"""Server profiles: behaviours of real backends the sandbox can imitate on its /privacy-v1 data endpoints.

Spec syntax (`SandboxConfig(profiles=...)`, CLI `--profile`, `PUT /_sandbox/profiles {"spec": ...}`,
`state.profiles.set(...)`): comma-separated names, each optionally `name:value`, e.g. `elastic,rate-limit:10`.

  capped-total[:N]          list `total` = min(true total, N), default 10000 (Elasticsearch track_total_hits)
  deep-paging-limit[:N]     offset + limit > N answers 400 "Result window is too large" (max_result_window)
  elastic                   capped-total + deep-paging-limit, both 10000
  no-total                  list responses carry no `total`
  first-page-total          `total` only on pages with offset 0
  unstable-ties             rows with equal sort values come in a new random order per request (sort=id stable)
  rate-limit[:R]            token bucket of R requests/s per API key (default 10); 429 with Retry-After: 0
  rate-limit-past-date[:R]  the same, Retry-After an HTTP-date one minute in the past
  scan-404                  tracker-scan-history of the first project (by id) answers 404
  types-403                 consent-types of the first project (by id) answers 403
  consent-date-filter       startDate/endDate filter on consentDate (requests: requestDate; request events: dateCreated)
  created-date-filter       startDate/endDate filter on dateCreated
  ignore-sort               sort/order are ignored: default order (dateCreated desc, id)
  latency[:MS]              sleep MS milliseconds (default 100) before answering

Profiles combine with each other and with the faults (`concord_pipelines.sandbox.faults`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

# name -> default value (None: the profile takes no value).
DEFAULTS: dict[str, float | None] = {
    "capped-total": 10_000, "deep-paging-limit": 10_000, "elastic": None, "no-total": None,
    "first-page-total": None, "unstable-ties": None, "rate-limit": 10, "rate-limit-past-date": 10,
    "scan-404": None, "types-403": None, "consent-date-filter": None, "created-date-filter": None,
    "ignore-sort": None, "latency": 100,
}
# Which field startDate/endDate filter on, per resource, under each date-filter profile (default dateUpdated).
DATE_FIELDS: dict[str, dict[str, str]] = {
    "consent-date-filter": {"consent-events": "consentDate", "compliance-requests": "requestDate",
                            "compliance-requests-events": "dateCreated"},
    "created-date-filter": {"consent-events": "dateCreated", "compliance-requests": "dateCreated",
                            "compliance-requests-events": "dateCreated"},
}
EXCLUSIVE = (("consent-date-filter", "created-date-filter"), ("rate-limit", "rate-limit-past-date"))


def parse(spec: str) -> dict[str, float | None]:
    """`elastic,rate-limit:5` -> {"capped-total": 10000, "deep-paging-limit": 10000, "rate-limit": 5}."""
    out: dict[str, float | None] = {}
    for part in spec.split(","):
        name, sep, raw = part.strip().lower().partition(":")
        if not name:
            continue
        if name not in DEFAULTS:
            raise ValueError(f"unknown profile {name!r}; valid: {', '.join(DEFAULTS)}")
        if name == "elastic":
            out.update({"capped-total": 10_000, "deep-paging-limit": 10_000})
            continue
        out[name] = _value(name, raw) if sep else DEFAULTS[name]
    for a, b in EXCLUSIVE:
        if a in out and b in out:
            raise ValueError(f"profiles {a!r} and {b!r} exclude each other")
    return out


def _value(name: str, raw: str) -> float:
    if DEFAULTS[name] is None:
        raise ValueError(f"profile {name!r} takes no value")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"profile {name!r} needs a number, got {raw!r}") from None
    if value < 0 or (value == 0 and name != "latency"):
        raise ValueError(f"profile {name!r} needs a positive number, got {raw!r}")
    return value


def spec_of(active: dict[str, float | None]) -> str:
    return ",".join(name if value is None else f"{name}:{value:g}" for name, value in active.items())


class TokenBucket:
    """Capacity `rate`, refilled at `rate` tokens per second of real (monotonic) time; starts full."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Profiles:
    """The active profiles of one sandbox; thread-safe (tests switch them from another thread)."""

    def __init__(self, spec: str = "") -> None:
        self._lock = threading.Lock()
        self.active: dict[str, float | None] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.counts: Counter[str] = Counter()
        self.set(spec)

    def set(self, spec: str) -> str:
        """Replace the active profiles with `spec` ("" = none); ValueError naming the valid ones if bad."""
        active = parse(spec or "")
        with self._lock:
            self.active = active
            self.buckets.clear()  # a new rate starts with a full bucket
        return self.get()

    def get(self) -> str:
        return spec_of(self.active)

    def has(self, name: str) -> bool:
        return name in self.active

    def value(self, name: str) -> float | None:
        return self.active.get(name)

    def snapshot(self) -> dict[str, Any]:
        return {"spec": self.get(), "active": dict(self.active), "counts": dict(self.counts)}

    # ---- behaviours ---------------------------------------------------------------------------------
    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def throttled(self, api_key: str) -> str | None:
        """The rate-limit profile that refuses this request (its bucket is empty), else None."""
        name = "rate-limit" if "rate-limit" in self.active else "rate-limit-past-date"
        rate = self.active.get(name)
        if rate is None:
            return None
        with self._lock:
            bucket = self.buckets.get(api_key)
            if bucket is None or bucket.rate != rate:
                bucket = self.buckets[api_key] = TokenBucket(float(rate))
            if bucket.take():
                return None
            self.counts[name] += 1
            return name

    def reported_total(self, total: int, offset: int) -> int | None:
        """The `total` a list page reports (None: the key is left out)."""
        if "no-total" in self.active or ("first-page-total" in self.active and offset > 0):
            return None
        cap = self.active.get("capped-total")
        return min(total, int(cap)) if cap is not None else total

    def window_error(self, offset: int, limit: int) -> str | None:
        """Elasticsearch's max_result_window refusal message, when offset + limit is past it."""
        window = self.active.get("deep-paging-limit")
        if window is None or offset + limit <= window:
            return None
        return (f"Result window is too large, from + size must be less than or equal to: [{int(window)}] "
                f"but was [{offset + limit}]")

    def date_field(self, resource: str) -> str:
        for name, fields in DATE_FIELDS.items():
            if name in self.active and resource in fields:
                return fields[resource]
        return "dateUpdated"
