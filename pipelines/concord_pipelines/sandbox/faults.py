"""Fault injection for the sandbox's /privacy-v1 data endpoints (never /_sandbox or openapi.json).

Spec syntax (CLI `--faults`, `PUT /_sandbox/faults {"spec": ...}`, `Faults.configure(...)`): comma-separated
`KIND=ARG` items.

Trigger faults - ARG is a MODE:
  429, 500, 502, 503, 504   answer with that status and the documented error body (429 adds Retry-After)
  drop                      close the connection without any response
  stall                     send headers and half the body, then sleep `stall_seconds` before the rest
  truncate                  200 with the JSON body cut in half (valid HTTP framing, invalid JSON)
  html                      200 with an HTML page instead of JSON (what a misconfigured proxy returns)
Valued faults - ARG is VALUE[@MODE], MODE defaults to always:
  latency=MS                sleep MS milliseconds before answering
  cap=N                     silently serve at most N items per page (`count` is the real number)
  inserts=N                 insert N new consent events after each consent-events page served
  updates=N                 update N consent events after each consent-events page served
Settings:
  retry_after=SECONDS (default 1), stall_seconds=SECONDS (default 30), seed=INT (fault RNG)

MODE is one of: a probability `0.1` (seeded RNG), `always`, `next:N` (the next N data requests), `off`.
Examples: `429=0.1,500=0.05,latency=50,cap=333,drop=next:2`, `cap=250@0.5`, `inserts=5@next:3`.

At most one trigger fault fires per request, checked in the order listed above; a `next:N` counter only
counts requests on which it fired.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

TRIGGERS = ("429", "500", "502", "503", "504", "drop", "stall", "truncate", "html")
VALUED = ("latency", "cap", "inserts", "updates")
SETTINGS = ("retry_after", "stall_seconds", "seed")
KINDS = TRIGGERS + VALUED


@dataclass
class Switch:
    """When a fault fires: mode off | always | prob (p) | next (remaining); `value` for valued faults."""

    mode: str = "off"
    p: float = 0.0
    remaining: int = 0
    value: float = 0.0

    def fire(self, rng: random.Random) -> bool:
        if self.mode == "always":
            return True
        if self.mode == "prob":
            return rng.random() < self.p
        if self.mode == "next" and self.remaining > 0:
            self.remaining -= 1
            return True
        return False

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode}
        if self.mode == "prob":
            out["p"] = self.p
        if self.mode == "next":
            out["remaining"] = self.remaining
        if self.value:
            out["value"] = self.value
        return out


def parse_mode(text: str) -> Switch:
    """`0.1` | `always` | `next:N` | `off` -> Switch; ValueError with the accepted forms otherwise."""
    text = text.strip().lower()
    if text in ("always", "on", "true"):
        return Switch("always")
    if text in ("off", "never", "false", "0", ""):
        return Switch("off")
    if text.startswith("next:"):
        n = int(text[5:])
        if n < 0:
            raise ValueError("next:N needs N >= 0")
        return Switch("next", remaining=n)
    p = float(text)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be within 0..1, got {text!r}")
    return Switch("always") if p == 1.0 else Switch("prob", p=p)


def parse_item(kind: str, arg: str) -> Switch:
    if kind in TRIGGERS:
        return parse_mode(arg)
    value, _, mode = arg.partition("@")
    switch = parse_mode(mode) if mode else Switch("always")
    switch.value = float(value)
    if switch.value < 0:
        raise ValueError(f"{kind} needs a non-negative value")
    if kind == "cap" and switch.value < 1:
        raise ValueError("cap needs a value >= 1")
    return switch


class Faults:
    """The fault switches of one sandbox, with a seeded RNG and a count of what was injected."""

    def __init__(self, seed: int = 0, spec: str | dict | None = None) -> None:
        self._lock = threading.Lock()
        self.seed = seed
        self.rng = random.Random(f"{seed}:faults")
        self.switches: dict[str, Switch] = {}
        self.retry_after = 1.0
        self.stall_seconds = 30.0
        self.injected: Counter[str] = Counter()
        if spec:
            self.configure(spec)

    def configure(self, spec: str | dict, reset: bool = False) -> None:
        """Apply a spec string (`429=0.1,cap=333`) or dict ({"429": "0.1", "cap": 333}); ValueError if bad."""
        items = _items(spec)
        parsed: dict[str, Switch] = {}
        settings: dict[str, float] = {}
        for kind, arg in items:
            if kind in SETTINGS:
                settings[kind] = float(arg)
            elif kind in KINDS:
                parsed[kind] = parse_item(kind, arg)
            else:
                raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS + SETTINGS)}")
        with self._lock:
            if reset:
                self.switches.clear()
            self.switches.update(parsed)
            self.retry_after = settings.get("retry_after", self.retry_after)
            self.stall_seconds = settings.get("stall_seconds", self.stall_seconds)
            if "seed" in settings:
                self.rng = random.Random(f"{int(settings['seed'])}:faults")

    def set(self, kind: str, mode: str = "always", value: float | None = None) -> None:
        """Python API: `faults.set("429", "next:2")`, `faults.set("cap", value=333)`, `faults.set("500", "0.1")`."""
        arg = mode if value is None else f"{value}@{mode}"
        self.configure({kind: arg})

    def clear(self) -> None:
        with self._lock:
            self.switches.clear()

    def fires(self, kind: str) -> bool:
        """Whether fault `kind` fires for this request (counts it in `injected` when it does)."""
        with self._lock:
            switch = self.switches.get(kind)
            if switch is None or switch.mode == "off" or not switch.fire(self.rng):
                return False
            self.injected[kind] += 1
            return True

    def value(self, kind: str) -> float | None:
        """The value of a valued fault if it fires for this request, else None."""
        switch = self.switches.get(kind)
        if switch is None or switch.mode == "off":
            return None
        return switch.value if self.fires(kind) else None

    def pick_trigger(self) -> str | None:
        """The trigger fault for this request, if any (first in TRIGGERS order that fires)."""
        if not self.switches:
            return None
        return next((kind for kind in TRIGGERS if self.fires(kind)), None)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "switches": {k: s.describe() for k, s in self.switches.items() if s.mode != "off"},
                "retry_after": self.retry_after,
                "stall_seconds": self.stall_seconds,
                "injected": dict(self.injected),
            }


def _items(spec: str | dict) -> list[tuple[str, str]]:
    if isinstance(spec, dict):
        return [(str(k).strip().lower(), str(v)) for k, v in spec.items()]
    items = []
    for part in spec.split(","):
        if not part.strip():
            continue
        kind, sep, arg = part.partition("=")
        if not sep:
            raise ValueError(f"fault item {part!r} is not KIND=ARG")
        items.append((kind.strip().lower(), arg.strip()))
    return items
