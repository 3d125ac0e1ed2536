"""Drift-safe paging of one list endpoint: a pure algorithm over an injected page fetcher.

Nothing the server says about its own arithmetic is trusted, because real backends differ:
- consecutive pages overlap by one row (page k+1 starts at the offset of page k's last row), so
  each boundary proves that nothing shifted between the two requests: a row inserted, deleted or
  moved before the boundary changes the row found there;
- `total` is a hint: it plans concurrent requests, but a full page is never the last page, a short
  page without a total is followed by one more request, and a read ends only on a page that brings
  nothing new, or falls short of a total;
- a read whose boundaries do not match, that saw a row twice outside the overlaps, or that got fewer
  rows than a total every page agreed on, is read again (ordered by `id` when that is the key, so
  rows sharing one `dateUpdated` come back in a stable order), then split in time;
- offsets stay under `max_offset` (Elasticsearch-style backends refuse deep pages): a window that
  holds more rows, may hold more (a total at the cap), or whose server refuses an offset is cut in
  time instead, into parts spread over the time from its first row to its end.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Hashable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from queue import Queue
from typing import Any, Protocol

import pyarrow as pa

from concord_pipelines.concord.records import to_utc
from concord_pipelines.concord.windows import MIN_WINDOW, Window, whole_ms
from concord_pipelines.errors import ApiError

log = logging.getLogger(__name__)

MAX_SPLIT_PARTS = 512  # a window too big to read at once is cut into at most this many parts
PART_FILL = 0.75  # parts aim at this share of the rows a window may hold, so uneven data rarely overflows


class DeepPagingRefused(Exception):
    """A 4xx for a page past the first: the server will not page this deep (e.g. max_result_window)."""

    def __init__(self, offset: int, limit: int, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.offset, self.limit, self.status = offset, limit, status


@dataclass
class Page:
    """One response: items as dicts, or (arrow path) as a table of flattened columns."""

    offset: int
    requested: int
    total: int | None  # None: the server did not say
    items: list[dict[str, Any]]
    table: pa.Table | None = None

    @property
    def count(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.items)


class PageFetcher(Protocol):
    """What the crawl needs from a client: its limits, a page request and a pool to run requests on."""

    options: Any  # concurrency, page_limit, max_offset, max_window_rows, window_attempts
    base_url: str

    def get_page(self, path: str, params: dict[str, Any], offset: int, stats: Any, arrow: bool = False,
                 limit: int | None = None) -> Page: ...  # fmt: skip

    def submit(self, fn: Any, *args: Any) -> Future[Any]: ...


def page_keys(rows: pa.Table | list[dict[str, Any]], fields: tuple[str, ...]) -> list[Hashable]:
    """The keys of a page's items, in order: column-wise from a table, item by item from dicts."""
    if isinstance(rows, pa.Table):
        columns = [rows.column(f).to_pylist() if f in rows.column_names else [None] * rows.num_rows for f in fields]
    else:
        columns = [[item.get(f) for item in rows] for f in fields]
    return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))


@dataclass
class _Seen:
    """What one page of a read showed: enough to check the chain of pages once the read is over."""

    count: int
    requested: int
    total: int | None
    keys: list[Hashable]
    edges: tuple[Any, ...] = ()  # the sort values of its first two and last two rows (ordered by a date)


@dataclass
class _Read:
    """One read of one window (or of a whole list)."""

    window: Window | None
    attempt: int = 0
    by_id: bool = False  # ordered by id: a stable order for rows that share their date
    seen: dict[int, _Seen] = field(default_factory=dict)
    scheduled: set[int] = field(default_factory=set)
    outstanding: int = 0
    delivered: set[Hashable] = field(default_factory=set)
    step: int = 0
    page_size: int = 0  # the most rows one page of this read brought: the server's real page size
    total: int | None = None
    begins: datetime | None = None  # the sort value of the first row, where a cut in time starts
    abandoned: bool = False  # split or restarted: late pages are dropped


class Crawl:
    """Schedules page requests over the fetcher's pool and yields pages' new items as they complete.

    Requests are topped up from completion callbacks, not only when the consumer asks for the next
    page: while dlt writes a batch, the next pages keep arriving (at most 2 x `concurrency`
    submitted, `concurrency` finished but not consumed).
    """

    def __init__(self, fetcher: PageFetcher, path: str, params: dict[str, Any], key: tuple[str, ...],
                 stats: Any, arrow: bool = False) -> None:  # fmt: skip
        self.fetcher, self.path, self.params, self.key, self.stats, self.arrow = fetcher, path, params, key, stats, arrow
        self.options = fetcher.options
        self.queue: deque[tuple[_Read, int]] = deque()
        self.inflight: dict[Future[Page], tuple[_Read, int]] = {}
        self.finished: Queue[Future[Page]] = Queue()
        self.lock = threading.RLock()  # re-entrant: a future that is already done calls back at once
        self.closed = False
        self.deepest_ok = 0  # the furthest offset + limit the server has answered: its paging limit is at least this
        self.failure: Exception | None = None  # raised while topping up from a completion callback

    # -- the loop ----------------------------------------------------------------------------

    def run(self, window: Window | None, first_page: Page | None = None) -> Iterator[list[dict[str, Any]] | pa.Table]:
        read = _Read(window)
        try:
            if first_page is not None:
                read.outstanding, read.scheduled = 1, {0}
                with self.lock:
                    items = self._handle(read, 0, first_page)
                if len(items):
                    yield items
            else:
                self._schedule(read, 0)
            while True:
                with self.lock:
                    self._fill()
                    if self.failure is not None:
                        raise self.failure
                    if not self.inflight and self.finished.empty():
                        return
                future = self.finished.get()
                with self.lock:
                    if self.failure is not None:
                        raise self.failure
                    read, offset = self.inflight.pop(future)
                    try:
                        items = self._handle(read, offset, future.result())
                    except DeepPagingRefused as refused:
                        items = self._refused(read, refused)
                if len(items):
                    yield items
        finally:
            with self.lock:
                self.closed = True
                for future in self.inflight:
                    future.cancel()

    def _fill(self) -> None:
        limit = self.options.concurrency
        while self.queue and not self.closed and self._running() < 2 * limit and self.finished.qsize() < limit:
            read, offset = self.queue.popleft()
            if read.abandoned:
                continue
            if offset >= self._offset_room():  # planned before the server showed a lower paging limit
                read.outstanding -= 1
                if read.outstanding == 0:
                    self._finish(read)
                continue
            future = self.fetcher.submit(self.fetcher.get_page, self.path, self._params(read), offset, self.stats,
                                         self.arrow, self._limit(offset))  # fmt: skip
            self.inflight[future] = (read, offset)
            future.add_done_callback(self._completed)

    def _running(self) -> int:
        return sum(1 for future in self.inflight if not future.done())

    def _completed(self, future: Future[Page]) -> None:
        with self.lock:
            self.finished.put(future)
            if self.finished.qsize() < self.options.concurrency:
                try:
                    self._fill()
                except Exception as err:  # raised on a worker's callback: the consumer re-raises it
                    self.failure = err

    def _params(self, read: _Read) -> dict[str, Any]:
        params = {**self.params, **(read.window.params() if read.window else {})}
        if read.by_id:
            params.update(sort="id", order="asc")
        return params

    def _limit(self, offset: int) -> int:
        """The page size to ask for: the API's maximum, unless that would reach past `max_offset`."""
        max_offset = self.options.max_offset
        return self.options.page_limit if not max_offset else max(1, min(self.options.page_limit, max_offset - offset))

    def _schedule(self, read: _Read, offset: int) -> None:
        if offset in read.scheduled:
            return
        read.scheduled.add(offset)
        read.outstanding += 1
        self.queue.append((read, offset))

    # -- one page ----------------------------------------------------------------------------

    def _handle(self, read: _Read, offset: int, page: Page) -> list[dict[str, Any]] | pa.Table:
        read.outstanding -= 1
        self.deepest_ok = max(self.deepest_ok, offset + page.requested)
        if read.abandoned:
            return []
        if offset == 0:
            read.begins = None if read.by_id else self._first_sort_value(page)
            if self._too_big(read, page):
                return []
        keys = page_keys(page.table if page.table is not None else page.items, self.key)
        read.seen[offset] = _Seen(page.count, page.requested, page.total, keys, self._edges(read, page))
        read.page_size = max(read.page_size, page.count)
        if offset == 0:
            self._plan(read, page)
        fresh = self._fresh(read, page, keys)
        self._follow(read, offset)
        if read.outstanding == 0:
            self._finish(read)
        self.stats.add(items=len(fresh))
        return fresh

    def _fresh(self, read: _Read, page: Page, keys: list[Hashable]) -> list[dict[str, Any]] | pa.Table:
        """The page's items whose key this read has not delivered yet (a table stays a table)."""
        mask = []
        for item_key in keys:
            new = item_key not in read.delivered
            if new:
                read.delivered.add(item_key)
            mask.append(new)
        if page.table is not None:
            return page.table if all(mask) else page.table.filter(pa.array(mask, pa.bool_()))
        return [item for item, new in zip(page.items, mask, strict=True) if new]

    def _plan(self, read: _Read, first: Page) -> None:
        """Requests for the pages a total promises, all at once; without a total, one round ahead."""
        read.total = first.total
        self.stats.add(expected=first.total or first.count)  # for the progress display only
        read.step = max(1, first.count - 1)
        if first.count < 2 or (first.total is None and first.count < first.requested):
            return  # nothing more, or (a short page without a total) one more page to be sure: _follow asks
        end = first.total if first.total is not None else read.step * self.options.concurrency
        for offset in range(read.step, min(end, self._offset_room()), read.step):
            self._schedule(read, offset)

    def _offset_room(self) -> int:
        return self.options.max_offset - 1 if self.options.max_offset else 1 << 62

    def _follow(self, read: _Read, offset: int) -> None:
        """Ask for the page after this one (from its last row) unless this one ended the list."""
        seen = read.seen[offset]
        after = self._successor(read, offset, seen)
        if after is None:
            return
        if after >= self._offset_room():
            return  # _finish sees the chain stop at the offset limit and cuts the window in time
        beyond_total = read.total is None or offset + seen.count > read.total
        if after not in read.scheduled and beyond_total and self._full(read, seen):
            # Past what the total promised (or no total): keep a round of pages ahead of the frontier.
            for ahead in range(1, self.options.concurrency):
                if after + ahead * read.step < self._offset_room():
                    self._schedule(read, after + ahead * read.step)
        self._schedule(read, after)

    def _edges(self, read: _Read, page: Page) -> tuple[Any, ...]:
        field_name = self.params.get("sort")
        if read.by_id or self.key != ("id",) or not isinstance(field_name, str) or page.count < 2:
            return ()
        if page.table is not None:
            column = page.table.column(field_name) if field_name in page.table.column_names else None
            values = [] if column is None else [column[i].as_py() for i in (0, 1, page.count - 2, page.count - 1)]
        else:
            values = [page.items[i].get(field_name) for i in (0, 1, page.count - 2, page.count - 1)]
        return tuple(values)

    @staticmethod
    def _full(read: _Read, seen: _Seen) -> bool:
        """As many rows as asked for, or as the server's biggest page of this read (it may cap pages silently)."""
        return seen.count >= min(seen.requested, read.page_size)

    def _successor(self, read: _Read, offset: int, seen: _Seen) -> int | None:
        """The offset of the next page in the chain, or None when this page ends the list.

        A full page never ends it, whatever the total says (totals may be capped); a short page
        ends it when the server's total agrees, else one more page makes sure.
        """
        if seen.count == 0 or (offset > 0 and seen.count == 1):
            return None  # nothing new beyond the overlap row
        if not self._full(read, seen) and seen.total is not None and offset + seen.count >= seen.total:
            return None
        return offset + seen.count - 1 if seen.count > 1 else offset + 1  # a one-row first page cannot overlap

    # -- one read ----------------------------------------------------------------------------

    def _finish(self, read: _Read) -> None:
        problem = self._check(read)
        if problem is None:
            return
        if problem == "offset limit":
            self._split(read, rows_at_least=self._offset_room(), reason="holds more rows than the offset limit")
            return
        log.info("window %s: %s; reading it again", read.window, problem)
        self._retry(read, problem)

    def _check(self, read: _Read) -> str | None:
        """Walk the chain of pages from offset 0: None when it proves the read complete, else why not."""
        offset, rows, boundaries, keys, totals = 0, 0, 0, set(), set()
        while True:
            seen = read.seen[offset]
            rows += seen.count
            keys.update(seen.keys)
            totals.add(seen.total)
            after = self._successor(read, offset, seen)
            if after is None:
                break
            if after >= self._offset_room():
                return "offset limit"
            following = read.seen.get(after)
            if following is None:
                return f"page at offset {after} missing"
            if seen.count > 1:
                if not following.keys or not self._lines_up(seen, following, keys):
                    return f"rows shifted at offset {after}"
                if _tie_at_boundary(seen, following):
                    return f"the boundary at offset {after} falls among rows that share one {self.params.get('sort')}"
                boundaries += 1
            offset = after
        if len(keys) != rows - boundaries:
            return f"{rows - boundaries - len(keys)} rows seen twice"
        if len(totals) == 1 and None not in totals and len(keys) < next(iter(totals)):
            return f"{len(keys)} distinct rows of a total of {next(iter(totals))}"
        return None

    def _lines_up(self, seen: _Seen, following: _Seen, keys: set[Hashable]) -> bool:
        """The next page starts with this page's last row.

        One exception, for items without an `id` to order by (compliance-request events): rows that
        share one instant may come back in another order on every request, and no stable order can
        be asked for. A one-row page that only confirms the end may then show any row already read:
        the window still holds as many rows, none of them new. (With an `id`, the re-read orders by
        it instead, which proves more: this exception would miss a row that left while another,
        never seen, took its place in the same request's gap.)
        """
        if following.keys[0] == seen.keys[-1]:
            return True
        return self.key != ("id",) and following.count == 1 and following.keys[0] in keys

    def _retry(self, read: _Read, problem: str) -> None:
        attempts = self.options.window_attempts
        by_id = self.key == ("id",)
        if read.attempt + 1 < attempts:
            self.stats.add(rereads=1)
            self._restart(_Read(read.window, attempt=read.attempt + 1, by_id=by_id))
        elif read.window is not None and read.window.splittable:
            self._split(read, rows_at_least=0, reason=problem)
        elif read.attempt + 1 < attempts + 2:  # one more chance each way for a window that cannot be cut
            self.stats.add(rereads=1)
            self._restart(_Read(read.window, attempt=read.attempt + 1, by_id=by_id and not read.by_id))
        else:
            raise ApiError(
                f"pages of {self.fetcher.base_url}{self.path} did not add up after {read.attempt + 1} reads "
                f"({problem}), even ordered by id in a window of {MIN_WINDOW.total_seconds() * 1000:.0f} ms; run again"
            )

    def _restart(self, read: _Read) -> None:
        self._schedule(read, 0)

    def _refused(self, read: _Read, refused: DeepPagingRefused) -> list[dict[str, Any]]:
        """The server refused a deep page: find how deep it pages, then cut the window in time."""
        read.outstanding -= 1
        if read.abandoned:
            return []
        offset, limit = refused.offset, refused.limit
        if limit >= 4 and offset + limit // 2 > self.deepest_ok:
            # Perhaps only this page's size reached past the limit: ask again for half as many rows.
            self._lower_max_offset(offset + limit // 2)
            read.outstanding += 1
            self.queue.appendleft((read, offset))
            return []
        log.info("offset %d refused (%s): keeping offset + limit within %d", offset, refused, max(offset, self.deepest_ok))
        self._lower_max_offset(max(2, offset, self.deepest_ok))
        self._split(read, rows_at_least=offset, reason=f"the server refuses offset {offset} ({refused})")
        return []

    def _lower_max_offset(self, value: int) -> None:
        if not self.options.max_offset or value < self.options.max_offset:
            self.options.max_offset = value

    def _too_big(self, read: _Read, first: Page) -> bool:
        """A window whose total reaches the offset limit (or `max_window_rows`) is cut before paging."""
        total, max_offset = first.total, self.options.max_offset
        if read.window is None or not read.window.splittable or total is None:
            return False
        if (not max_offset or total < max_offset) and total <= self.options.max_window_rows:
            return False
        self._split(read, rows_at_least=total, reason=f"total {total}")
        return True

    def _split(self, read: _Read, rows_at_least: int, reason: str) -> None:
        """Cut the read's window into parts read afresh; a window that cannot be cut fails loudly."""
        read.abandoned = True
        window = read.window
        if window is None or not window.splittable:
            where = f"window {window}" if window else "this list (it has no date filter)"
            raise ApiError(
                f"cannot read {self.fetcher.base_url}{self.path}: {where} cannot be cut further and {reason}; "
                "its rows share one instant beyond the server's paging limit (raise max_offset if the server allows)"
            )
        self.stats.add(splits=1)
        capacity = max(1, int(min(self.options.max_window_rows, self._offset_room()) * PART_FILL))
        parts = max(2, self.options.concurrency, -(-rows_at_least // capacity))
        for part in self._cut(window, read.begins, min(MAX_SPLIT_PARTS, parts)):
            self._schedule(_Read(part), 0)

    @staticmethod
    def _cut(window: Window, begins: datetime | None, parts: int) -> tuple[Window, ...]:
        """`window` in `parts`, cut evenly over the time from its first row (when known) to its end.

        Pages sorted ascending on a date start with the window's earliest row: a first load from
        2015 whose rows are all in the last month is cut over that month, not over eleven years of
        empty parts. The first part reaches back to the window's start: when the API filters on
        another date, rows from before the first row's date are read there.
        """
        if begins is None or not window.start + MIN_WINDOW < begins < window.end - MIN_WINDOW:
            return window.split(parts)
        head, *rest = Window(whole_ms(begins), window.end).split(parts)
        return (Window(window.start, head.end), *rest)

    def _first_sort_value(self, page: Page) -> datetime | None:
        """The first row's value of an ascending sort on a date (ordered by id: None)."""
        field_name = self.params.get("sort")
        if not isinstance(field_name, str) or self.params.get("order", "asc") != "asc" or page.count == 0:
            return None
        if page.table is not None:
            value = page.table.column(field_name)[0].as_py() if field_name in page.table.column_names else None
        else:
            value = page.items[0].get(field_name)
        try:
            return to_utc(value)
        except (TypeError, ValueError, OverflowError):
            return None


def _tie_at_boundary(seen: _Seen, following: _Seen) -> bool:
    """The last row of a page shares its sort value with a neighbour: a server may order such rows
    differently on every request, so the matching boundary row proves nothing there (read by id)."""
    if len(seen.edges) < 4:
        return False
    before = seen.edges[2] == seen.edges[3]
    after = len(following.edges) == 4 and following.edges[0] == following.edges[1]
    return before or after


class SweepUnstable(Exception):
    """The sweep's pages did not line up where rows share one dateUpdated: offsets cannot be trusted there."""


def sweep_updated_since(fetcher: PageFetcher, path: str, params: dict[str, Any], key: tuple[str, ...],
                        since: datetime, stats: Any) -> Iterator[list[dict[str, Any]]]:  # fmt: skip
    """Rows updated at or after `since`, newest first, read without a date filter.

    Whatever field the server's `startDate`/`endDate` filter on (the reference leaves it open),
    an update to an old row shows up here: ordered by `dateUpdated` descending, reading stops at
    the first row older than `since`. Pages overlap by one row: a row updated meanwhile moves to
    the front and shifts the rest back into view (seen twice, harmless); a boundary row that
    changed into one never seen, or into another row of the same instant (ties in an order that
    changes per request), raises SweepUnstable, since rows may have been skipped. A server that
    does not honour the order is detected (dates going up) and reported, and the sweep stops.
    """
    query = {**params, "sort": "dateUpdated", "order": "desc"}
    offset, last, seen = 0, None, set()
    room = fetcher.options.max_offset - 1 if fetcher.options.max_offset else 1 << 62
    while True:
        limit = fetcher.options.page_limit if room >= 1 << 62 else max(2, min(fetcher.options.page_limit, room + 1 - offset))
        page = fetcher.get_page(path, query, offset, stats, False, limit)
        if not page.items:
            return
        dates = [to_utc(item.get("dateUpdated")) for item in page.items]
        if any(d is None for d in dates) or any(a < b for a, b in zip(dates, dates[1:], strict=False)) or (
            last is not None and dates[0] > last[1]
        ):
            log.warning(
                "%s does not order by dateUpdated descending (or has rows without it): updates to rows outside the "
                "date filter's window cannot be found; run `concord-pipeline verify --repair` or --full-refresh now and then", path,
            )
            return
        keys = page_keys(page.items, key)
        first = keys[0]
        if last is not None and first != last[0] and (dates[0] == last[1] or first not in seen):
            raise SweepUnstable(f"{path}: rows shifted at offset {offset} of the dateUpdated sweep")
        seen.update(keys)
        yield [item for item, updated in zip(page.items, dates, strict=True) if updated >= since]
        if page.count < 2 or dates[-1] < since or (page.count < limit and page.total is not None and offset + page.count >= page.total):
            return
        last, offset = (keys[-1], dates[-1]), offset + page.count - 1
        if offset >= room:
            log.warning(
                "%s: more rows were updated since %s than the server pages through: updates before %s were not checked; "
                "run `concord-pipeline verify --repair` for those days", path, since, last[1],
            )
            return
