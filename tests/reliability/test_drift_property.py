"""Property test of drift-safe paging (`_Crawl`) against an in-memory API that changes between pages.

Whatever the page size, silent cap, concurrency, window size limit, the server's arithmetic (exact,
missing, capped or first-page-only totals), a deep-paging limit, rows sharing one instant in an
order that changes per request, and the changes made while paging, every row that was in the
window when the crawl began is delivered (unless it left the window), and the crawl ends (windows
are re-read, then split, until they add up). The window ends
when the crawl begins, as a run's window does (run start minus lag). Pages are sorted by
dateUpdated; the API filters on one of two dates, as the reference leaves open:
- on dateUpdated: an update moves the row to "now", out of the window, so later pages shift back
  (a gap); the next run's window, which starts before this one's end, reads it. New rows are
  dated "now", after the window.
- on a date that never changes (like consentDate): an update moves the row to the end of the sort
  order, inside the window (a gap, then an overlap); late rows land inside the window, at the end
  of the sort order too.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from concord_pipelines.concord.client import ClientOptions, ResourceStats
from concord_pipelines.concord.crawl import Crawl, DeepPagingRefused, Page
from concord_pipelines.concord.windows import Window

BASE = datetime(2026, 1, 1, tzinfo=UTC)


class DriftingApi:
    """Serves rows filtered to [startDate, endDate) and sorted by dateUpdated; mutates after each page."""

    def __init__(
        self, rows: int, limit: int, cap: int, mutations: int, seed: int, concurrency: int,
        max_window_rows: int = 10_000, filter_on: str = "updated", totals: str = "exact",
        deep_limit: int = 0, ties: int = 1, max_offset: int = 0,
    ) -> None:  # fmt: skip
        # `ties` rows share each instant; their order changes on every request unless sorted by id.
        self.updated = {f"r{i}": BASE + timedelta(seconds=i // ties) for i in range(rows)}
        self.totals, self.deep_limit, self.ties = totals, deep_limit, ties
        self.created = dict(self.updated)
        self.filter_on = filter_on
        self.clock = BASE + timedelta(seconds=rows)
        self.moved: set[str] = set()
        self.mutations_left = mutations
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.base_url = "memory://"
        self.options = ClientOptions(base_url="memory://", api_key="k", organization_id="o", concurrency=concurrency,
                                     page_limit=limit, max_window_rows=max_window_rows, max_offset=max_offset)
        self.cap = cap
        self._pool = ThreadPoolExecutor(max_workers=concurrency)

    def submit(self, fn: Any, *args: Any) -> Any:
        return self._pool.submit(fn, *args)

    def get_page(self, path: str, params: dict[str, Any], offset: int, stats: ResourceStats, arrow: bool = False,
                 limit: int | None = None) -> Page:  # fmt: skip
        limit = limit or self.options.page_limit
        if self.deep_limit and offset > 0 and offset + limit > self.deep_limit:
            raise DeepPagingRefused(offset, limit, 400, "Result window is too large")
        start = datetime.fromisoformat(params["startDate"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(params["endDate"].replace("Z", "+00:00"))
        filtered = self.updated if self.filter_on == "updated" else self.created
        with self.lock:
            if params.get("sort") == "id":
                rows = sorted((self.updated[k], k) for k, d in filtered.items() if start <= d < end)
                rows.sort(key=lambda row: row[1])
            else:
                shuffle = self.rng.random() if self.ties > 1 else 0.0  # a tie order of this request only
                rows = sorted(((self.updated[k], k) for k, d in filtered.items() if start <= d < end),
                              key=lambda row: (row[0], hash((row[1], shuffle))))  # fmt: skip
            served = rows[offset:offset + min(limit, self.cap)]
            self._mutate()
        stats.add(pages=1)
        return Page(offset, limit, self._total(len(rows), offset), [{"id": k, "updated": u} for u, k in served])

    def _total(self, rows: int, offset: int) -> int | None:
        if self.totals == "none" or (self.totals == "first" and offset > 0):
            return None
        return min(rows, 50) if self.totals == "capped" else rows

    def _mutate(self) -> None:
        while self.mutations_left and self.rng.random() < 0.5:
            self.mutations_left -= 1
            self.clock += timedelta(milliseconds=self.rng.randint(1, 900))
            if self.rng.random() < 0.5 or not self.updated:
                row = f"n{len(self.updated)}"
                late = BASE + timedelta(milliseconds=self.rng.randint(0, 250_000))
                self.created[row] = self.clock if self.filter_on == "updated" else late
            else:
                row = self.rng.choice(sorted(self.updated))
                self.moved.add(row)
            self.updated[row] = self.clock

    def left_the_window(self) -> set[str]:
        return self.moved if self.filter_on == "updated" else set()


def crawl_all(api: DriftingApi, window: Window, query: dict[str, Any] | None = None) -> tuple[list[str], ResourceStats]:
    """The ids of every item the crawl delivers over `window`, and its stats."""
    stats = ResourceStats()
    try:
        crawl = Crawl(api, "/items", query or {}, ("id",), stats)  # type: ignore[arg-type]
        return [item["id"] for page in crawl.run(window) for item in page], stats
    finally:
        api._pool.shutdown(cancel_futures=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(0, 250),
    limit=st.sampled_from([5, 16, 100]),
    cap=st.sampled_from([3, 7, 1000]),
    mutations=st.integers(0, 25),
    seed=st.integers(0, 10**6),
    concurrency=st.integers(1, 4),
    max_window_rows=st.sampled_from([10_000, 40]),
    filter_on=st.sampled_from(["updated", "created"]),
    sorted_query=st.booleans(),  # with sort=updated&order=asc, too-big windows are cut from their first row
    totals=st.sampled_from(["exact", "none", "first", "capped"]),  # capped: at 50, like a search backend's
    deep=st.sampled_from([False, False, True]),  # offset + limit past twice the page size answers 400
    ties=st.sampled_from([1, 1, 30]),
    max_offset=st.sampled_from([0, 80]),
)
def test_every_row_present_at_the_start_is_delivered(
    rows, limit, cap, mutations, seed, concurrency, max_window_rows, filter_on, sorted_query, totals, deep,
    ties, max_offset,
):  # fmt: skip
    assume(sorted_query or ties == 1)  # the connector always asks for an order; ties are rows equal in it
    deep_limit = max(2 * limit, 40) if deep else 0
    api = DriftingApi(rows, limit, cap, mutations, seed, concurrency, max_window_rows, filter_on, totals,
                      deep_limit, ties, max_offset)  # fmt: skip
    at_start = set(api.updated)
    query = {"sort": "updated", "order": "asc"} if sorted_query else {}
    delivered, stats = crawl_all(api, Window(BASE, api.clock + timedelta(milliseconds=1)), query)
    missing = at_start - api.left_the_window() - set(delivered)
    assert not missing, f"{len(missing)} rows lost (rereads {stats.rereads}, splits {stats.splits})"
    quiet = totals == "exact" and not deep_limit and not max_offset and ties == 1
    if mutations == api.mutations_left and rows <= max_window_rows and quiet:  # nothing changed: one read
        assert stats.rereads == stats.splits == 0


def test_a_window_too_big_to_read_at_once_is_cut_in_one_go():
    """1,000 rows over a day with 100 rows per window at most: one cut into parts of ~75, not halving four deep."""
    api = DriftingApi(1000, 10, 1000, 0, 0, 4, max_window_rows=100)
    api.updated = {f"r{i}": BASE + timedelta(seconds=86.4 * i) for i in range(1000)}
    delivered, stats = crawl_all(api, Window(BASE, BASE + timedelta(days=1)))
    assert sorted(delivered) == sorted(api.updated)
    assert stats.splits == 1
    # The first page, which told the total, and the parts' pages: 9 new rows a page (one overlaps), and
    # at most one short page per part (14 parts).
    assert stats.pages <= 1 + 1000 // 9 + 14


def test_a_too_big_window_whose_rows_sit_at_its_end_is_cut_where_the_rows_begin():
    """A first load from long ago whose 1,000 rows are all in its last hour: parts over that hour only."""
    api = DriftingApi(0, 10, 1000, 0, 0, 4, max_window_rows=100)
    last_hour = BASE + timedelta(days=30) - timedelta(hours=1)
    api.updated = {f"r{i}": last_hour + timedelta(seconds=3.6 * i) for i in range(1000)}
    delivered, stats = crawl_all(api, Window(BASE, BASE + timedelta(days=30)), {"sort": "updated", "order": "asc"})
    assert sorted(delivered) == sorted(api.updated)
    assert stats.splits == 1
    assert stats.pages <= 1 + 1000 // 9 + 14  # as above: no empty parts over the 29 days before the rows
