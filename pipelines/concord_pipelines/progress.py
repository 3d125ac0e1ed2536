"""Progress while a run extracts: a live display on a terminal, plain lines in logs (Airflow, CI).

Both read the per-resource `ResourceStats` the client updates from its worker threads: rows done,
the window's estimated total (`expected`, from the first page of each window read), retries
(throttling and server errors). The live display is rich's, not hand-drawn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any, Protocol


class Stats(Protocol):
    items: int
    retries: int
    rereads: int
    splits: int


def expected_rows(stats: Stats) -> int | None:
    """The estimated total of rows to read, when the client knows it (a window's first page says)."""
    expected = int(getattr(stats, "expected", 0) or 0)
    return max(expected, stats.items) if expected else None


def make_progress(stats: Callable[[], Mapping[str, Stats]], stream: IO[str], interval: float | None = None) -> LiveProgress | LineProgress:
    """A live display when `stream` is a terminal, else plain lines."""
    if _is_terminal(stream):
        return LiveProgress(stats, stream)
    return LineProgress(stats, stream, interval=10.0 if interval is None else interval)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Poller:
    """Calls `tick()` every `interval` seconds in a daemon thread between `__enter__` and `__exit__`."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> _Poller:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.tick(final=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()

    def tick(self, final: bool = False) -> None:
        raise NotImplementedError


class LineProgress(_Poller):
    """One line per resource whose numbers changed, every `interval` seconds (10 s by default)."""

    def __init__(self, stats: Callable[[], Mapping[str, Stats]], stream: IO[str], interval: float = 10.0) -> None:
        super().__init__(interval)
        self.stats, self.stream = stats, stream
        self._last: dict[str, tuple[int, int]] = {}

    def tick(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        for name, s in list(self.stats().items()):
            now = (s.items, s.retries)
            if self._last.get(name) == now:
                continue
            self._last[name] = now
            print(f"  {name}: {line_text(s, elapsed)}", file=self.stream, flush=True)


def line_text(s: Stats, elapsed: float) -> str:
    """'12,000 of ~40,000 rows (30%), 2,400 rows/s, ETA 12 s, 3 retries'."""
    expected = expected_rows(s)
    rate = s.items / elapsed
    parts = [f"{s.items:,} rows" if expected is None else f"{s.items:,} of ~{expected:,} rows ({100 * s.items // max(expected, 1)}%)"]
    parts.append(f"{rate:,.0f} rows/s")
    if expected is not None and rate > 0 and s.items < expected:
        parts.append(f"ETA {(expected - s.items) / rate:,.0f} s")
    if s.retries:
        parts.append(f"{s.retries:,} retries (throttled or failed requests)")
    return ", ".join(parts)


class LiveProgress(_Poller):
    """rich's live progress bars: one per resource, refreshed from the stats twice a second."""

    def __init__(self, stats: Callable[[], Mapping[str, Stats]], stream: IO[str]) -> None:
        super().__init__(0.5)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.stats = stats
        self._tasks: dict[str, Any] = {}
        self._bar = Progress(
            TextColumn("{task.description:<26}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[retries]}"),
            console=Console(file=stream),
            transient=False,
        )

    def __enter__(self) -> LiveProgress:
        self._bar.start()
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._bar.stop()

    def tick(self, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        for name, s in list(self.stats().items()):
            if name not in self._tasks:
                self._tasks[name] = self._bar.add_task(name, total=None, rate="", retries="")
            expected = expected_rows(s)
            self._bar.update(
                self._tasks[name],
                completed=s.items,
                total=s.items if final and expected is None else expected,
                rate=f"{s.items / elapsed:,.0f}/s",
                retries=f"{s.retries:,} retries" if s.retries else "",
            )
