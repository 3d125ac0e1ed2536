"""HTTP client for the Concord Privacy API: auth, timeouts, retries, paging and error mapping.

Paging rules, chosen for real servers rather than our sandbox:
- advance by the number of items actually received, never by the requested `limit` (servers
  may cap a page silently, or answer an odd page size);
- once the first page gives `total`, fetch the rest of the window concurrently (bounded);
- a window is accepted only when its pages add up: every page reports the same `total` and the
  distinct keys received equal it. Otherwise it is read again, then split in halves, down to
  windows that fit in one response (which is consistent by construction);
- a window whose first page reports more than `max_window_rows` is cut at once into parts of
  about half that, spread over the time from its first row to its end.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from queue import Queue
from typing import Any

import httpx
import orjson
import pyarrow as pa

from pipelines import __version__
from pipelines.concord import settings
from pipelines.concord.records import read_page_arrow, to_utc
from pipelines.concord.windows import MIN_WINDOW, Window, whole_ms
from pipelines.errors import ApiError, ConfigError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_SPLIT_PARTS = 64  # a window too big to read at once is cut into at most this many parts


@dataclass
class ClientOptions:
    base_url: str
    api_key: str
    organization_id: str
    concurrency: int = settings.DEFAULT_CONCURRENCY
    page_limit: int = settings.PAGE_LIMIT
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_retries: int = 6
    connect_retries: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 120.0
    max_window_rows: int = settings.MAX_WINDOW_ROWS
    window_attempts: int = 2  # full re-reads of a drifting window before it is split


@dataclass
class ResourceStats:
    """What the run summary reports per resource; updated from worker threads under a lock."""

    pages: int = 0
    requests: int = 0
    retries: int = 0
    rereads: int = 0
    splits: int = 0
    items: int = 0
    seconds: float = 0.0
    expected: int = 0  # rows the windows read so far said they hold (their first pages' totals): progress only
    unfinished: bool = False  # this run read a slice of the window; the runner runs again for the rest
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


@dataclass
class Page:
    """One response: items as dicts, or (arrow path) as a table of flattened columns."""

    offset: int
    requested: int
    total: int
    items: list[dict[str, Any]]
    table: pa.Table | None = None

    @property
    def count(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.items)


class GarbageResponse(Exception):
    """A 200 whose body is not the API's JSON (truncated, HTML, wrong shape): retried, then reported."""


KEY_SETTING = "SOURCES__CONCORD__API_KEY (or api_key in .dlt/secrets.toml)"


def check_api_key(key: str) -> str:
    """The key as sent: surrounding whitespace (a pasted newline) removed; refuses what no header can carry.

    The error never quotes the key: an `Illegal header value` from httpx would, and dlt's trace keeps it.
    """
    key = (key or "").strip()
    if not key:
        raise ConfigError(f"the API key is empty: set {KEY_SETTING}")
    bad = next((i for i, ch in enumerate(key) if not " " <= ch <= "~"), None)
    if bad is not None:
        raise ConfigError(
            f"the API key has a control or non-ASCII character at position {bad + 1} of {len(key)}: "
            f"copy it again from the Concord admin UI into {KEY_SETTING}"
        )
    return key


def check_base_url(url: str) -> str:
    """An http(s) URL without credentials, or a ConfigError that never repeats a password."""
    text = (url or "").strip()
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError):
        raise ConfigError(f"the base URL is not a URL: fix --base-url / SOURCES__CONCORD__BASE_URL, e.g. {settings.DEFAULT_BASE_URL}") from None
    if parsed.userinfo:
        safe = parsed.copy_with(username=None, password=None)
        raise ConfigError(
            f"the base URL {safe} carries a user name or password: remove `user:password@` from --base-url / "
            "SOURCES__CONCORD__BASE_URL (the API authenticates with the API key only)"
        )
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"the base URL {text!r} needs http:// or https:// and a host: fix --base-url / SOURCES__CONCORD__BASE_URL, "
            f"e.g. {settings.DEFAULT_BASE_URL}"
        )
    return text


def origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}"


def same_origin_only(base_url: str) -> Callable[[httpx.Request], None]:
    """A request hook that refuses, before sending, a redirect to another origin (it would carry the key)."""
    home = origin(httpx.URL(base_url))

    def hook(request: httpx.Request) -> None:
        target = origin(request.url)
        if target != home:
            request.headers.pop("x-api-key", None)
            raise ConfigError(
                f"the API at {home} redirected to {target}; the API key is only sent to {home}: "
                "if that is the API's new address, set --base-url / SOURCES__CONCORD__BASE_URL to it"
            )

    return hook


class ConcordClient:
    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.base_url = check_base_url(options.base_url).rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "x-api-key": check_api_key(options.api_key),
                "accept": "application/json",
                "user-agent": f"concord-pipelines/{__version__}",
            },
            timeout=httpx.Timeout(options.timeout, connect=options.connect_timeout),
            limits=httpx.Limits(max_connections=options.concurrency * 2, max_keepalive_connections=options.concurrency * 2),
            follow_redirects=True,
            # httpx drops only `Authorization` on a cross-origin redirect; our key is `x-api-key`.
            event_hooks={"request": [same_origin_only(self.base_url)]},
        )
        # `concurrency` bounds the HTTP requests in flight; twice as many workers let a page be
        # decoded while its slot already carries the next request (with 50 ms of latency per
        # request, holding the slot through decoding cost ~25% of the throughput).
        self._http_slots = threading.BoundedSemaphore(max(1, options.concurrency))
        self._pool = ThreadPoolExecutor(max_workers=2 * max(1, options.concurrency), thread_name_prefix="concord-http")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> ConcordClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, template: str, project: str | None = None) -> str:
        return template.format(org=self.options.organization_id, project=project or "")

    # -- single requests -------------------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any], stats: ResourceStats, decode: Callable[[httpx.Response], Any] | None = None) -> Any:
        """GET with retries on 429/5xx/connection errors/garbage bodies; 4xx become clear errors."""
        attempt = 0
        while True:
            stats.add(requests=1)
            try:
                with self._http_slots:
                    response = self._http.get(path, params=params)
                if response.status_code in RETRY_STATUSES:
                    raise _Retryable(response)
                if response.status_code >= 400:
                    raise self._client_error(response, path)
                return (decode or self._decode)(response)
            except (_Retryable, httpx.TransportError, GarbageResponse) as err:
                budget = self.options.connect_retries if isinstance(err, httpx.ConnectError) else self.options.max_retries
                if attempt >= budget:
                    raise self._exhausted(err, path, attempt) from None
                delay = self._delay(err, attempt)
                log.info("retrying %s in %.2fs after %s", path, delay, _describe(err))
                stats.add(retries=1)
                attempt += 1
                time.sleep(delay)

    def get_page(self, path: str, params: dict[str, Any], offset: int, stats: ResourceStats, arrow: bool = False) -> Page:
        limit = self.options.page_limit
        query = {**params, "offset": offset, "limit": limit}
        if arrow:
            page = self.get_json(path, query, stats, decode=lambda r: self._decode_arrow(r, offset, limit, path))
        else:
            items, total = _page_fields(self.get_json(path, query, stats), path)
            page = Page(offset=offset, requested=limit, total=total, items=items)
        stats.add(pages=1)
        return page

    def count(self, path: str, params: dict[str, Any], stats: ResourceStats) -> int:
        """Rows matching `params`: the `total` of a one-item page."""
        _, total = _page_fields(self.get_json(path, {**params, "offset": 0, "limit": 1}, stats), path)
        return total

    def _decode_arrow(self, response: httpx.Response, offset: int, limit: int, path: str) -> Page:
        """Arrow's JSON reader first; a page it cannot read (mixed types, odd shape) takes the dict path."""
        try:
            total, table = read_page_arrow(response.content)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            items, total = _page_fields(self._decode(response), path)
            return Page(offset=offset, requested=limit, total=total, items=items)
        if not isinstance(total, int):
            total = offset + table.num_rows
        return Page(offset=offset, requested=limit, total=total, items=[], table=table)

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            kind = response.headers.get("content-type", "unknown content type").split(";")[0]
            raise GarbageResponse(f"a body that is not JSON ({kind}, {len(response.content)} bytes)") from None

    def _delay(self, err: Exception, attempt: int) -> float:
        backoff = min(self.options.backoff_max, self.options.backoff_base * 2**attempt)
        backoff *= 0.5 + random.random() / 2  # jitter so concurrent workers do not retry in step
        if isinstance(err, _Retryable):
            retry_after = _retry_after_seconds(err.response.headers.get("retry-after"))
            if retry_after is not None:
                return min(max(retry_after, 0.0), self.options.retry_after_max)
        return backoff

    def _client_error(self, response: httpx.Response, path: str) -> Exception:
        status, message = response.status_code, _error_message(response)
        org = self.options.organization_id
        if status == 401:
            return ConfigError(
                f"the Concord API refused the request as unauthenticated (401: {message}); "
                "set the API key in SOURCES__CONCORD__API_KEY or .dlt/secrets.toml"
            )
        if status == 403:
            return ConfigError(
                f"the Concord API key was rejected for organization {org} (403: {message}); "
                "check the key in SOURCES__CONCORD__API_KEY or .dlt/secrets.toml and that it can read this organization"
            )
        if status == 404:
            return ConfigError(
                f"not found: {path} (404: {message}); check the organization id ({org}, --org / "
                "SOURCES__CONCORD__ORGANIZATION_ID), the project ids (--project) and --base-url"
            )
        if status == 422:
            return ApiError(f"the Concord API rejected the request parameters for {path} (422: {message})")
        return ApiError(f"the Concord API answered {status} for {path}: {message}")

    def _exhausted(self, err: Exception, path: str, attempts: int) -> Exception:
        where = f"{self.base_url}{path}"
        if isinstance(err, httpx.ConnectError):
            return ConfigError(f"cannot connect to {self.base_url} ({_describe(err)}); check --base-url / SOURCES__CONCORD__BASE_URL and the network")
        if isinstance(err, GarbageResponse):
            return ApiError(
                f"{where} answered {err} {attempts + 1} times; is the base URL the Concord API "
                "(ending in /privacy-v1)? Check --base-url / SOURCES__CONCORD__BASE_URL"
            )
        return ApiError(f"gave up on {where} after {attempts + 1} attempts: {_describe(err)}; the next run retries from the same cursor")

    # -- paging ----------------------------------------------------------------------------

    def iter_pages(
        self,
        path: str,
        params: dict[str, Any],
        stats: ResourceStats,
        key: tuple[str, ...] = ("id",),
        window: Window | None = None,
        arrow: bool = False,
        first_page: Page | None = None,
    ) -> Iterator[list[dict[str, Any]] | pa.Table]:
        """Yield the items of every page of `window` (or of everything), each distinct key once per read.

        `key` names the API fields that identify an item. With `arrow`, pages are decoded by
        pyarrow and yielded as tables of flattened columns where possible, else as lists of dicts.
        `first_page` is the window's page at offset 0 when the caller already has it (it looked at
        the total first): the crawl starts from it instead of requesting it again.
        """
        crawl = _Crawl(self, path, params, key, stats, arrow)
        yield from crawl.run(window, first_page)

    def get_json_each(self, path: str, queries: list[dict[str, Any]], stats: ResourceStats) -> Iterator[Any]:
        """One GET per query, `concurrency` at a time, answers in the order of `queries`."""
        futures = [self._pool.submit(self.get_json, path, query, stats) for query in queries]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def page_keys(page: Page, fields: tuple[str, ...]) -> list[Hashable]:
    """The keys of a page's items, in order: column-wise from a table, item by item from dicts."""
    if page.table is not None:
        table = page.table
        columns = [table.column(f).to_pylist() if f in table.column_names else [None] * table.num_rows for f in fields]
    else:
        columns = [[item.get(f) for item in page.items] for f in fields]
    return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))


class _Retryable(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass
class _WindowRead:
    """One read of one window: what its pages said, to decide whether they add up."""

    window: Window | None
    attempt: int
    total: int = -1
    step: int = 0
    outstanding: int = 0
    totals: set[int] = field(default_factory=set)
    keys: set[Hashable] = field(default_factory=set)
    scheduled: set[int] = field(default_factory=set)

    def consistent(self) -> bool:
        return self.totals == {self.total} and len(self.keys) == self.total


class _Crawl:
    """Schedules probe and page requests over a thread pool and yields pages as they complete.

    Requests are topped up from the pool's completion callbacks, not only when the consumer asks
    for the next page: while dlt writes a batch, the next pages keep arriving (at most
    `concurrency` requests on the wire, as many more decoding or queued, and `concurrency` finished
    but not yet consumed).
    """

    def __init__(
        self,
        client: ConcordClient,
        path: str,
        params: dict[str, Any],
        key: tuple[str, ...],
        stats: ResourceStats,
        arrow: bool = False,
    ) -> None:
        self.client, self.path, self.params, self.key, self.stats = client, path, params, key, stats
        self.arrow = arrow
        self.queue: deque[tuple[_WindowRead, int]] = deque()
        self.inflight: dict[Future[Page], tuple[_WindowRead, int]] = {}
        self.finished: Queue[Future[Page]] = Queue()
        self.lock = threading.RLock()  # re-entrant: a future that is already done calls back at once
        self.closed = False

    def run(self, window: Window | None, first_page: Page | None = None) -> Iterator[list[dict[str, Any]]]:
        read = _WindowRead(window, attempt=0)
        if first_page is None:
            self.queue.append((read, 0))
        try:
            if first_page is not None:
                with self.lock:
                    items = self._handle(read, 0, first_page)
                if len(items):
                    yield items
            while True:
                with self.lock:
                    self._fill()
                    if not self.inflight and self.finished.empty():
                        return
                future = self.finished.get()
                with self.lock:
                    read, offset = self.inflight.pop(future)
                    items = self._handle(read, offset, future.result())
                if len(items):
                    yield items
        finally:
            with self.lock:
                self.closed = True
                for future in self.inflight:
                    future.cancel()

    def _fill(self) -> None:
        """Submit queued requests while fewer than 2 x `concurrency` are running (call under the lock).

        The client lets `concurrency` of them be on the wire at once; the others are decoding, or
        waiting for a slot so that the next request goes out the moment one frees up.
        """
        limit = self.client.options.concurrency
        while self.queue and not self.closed and self._running() < 2 * limit and self.finished.qsize() < limit:
            read, offset = self.queue.popleft()
            params = {**self.params, **(read.window.params() if read.window else {})}
            future = self.client._pool.submit(self.client.get_page, self.path, params, offset, self.stats, self.arrow)
            self.inflight[future] = (read, offset)
            future.add_done_callback(self._completed)

    def _running(self) -> int:
        return sum(1 for future in self.inflight if not future.done())

    def _completed(self, future: Future[Page]) -> None:
        with self.lock:
            self.finished.put(future)
            if self.finished.qsize() < self.client.options.concurrency:
                self._fill()

    def _handle(self, read: _WindowRead, offset: int, page: Page) -> list[dict[str, Any]] | pa.Table:
        if read.total < 0:  # the first page of this read
            if self._too_big(read, page):
                return []
            self._plan(read, page)
        read.outstanding -= 1
        read.totals.add(page.total)
        fresh = self._fresh(read, page)
        self._fill_gap(read, offset, page.count)
        if read.outstanding == 0:
            self._finish(read)
        self.stats.add(items=len(fresh))
        return fresh

    def _fresh(self, read: _WindowRead, page: Page) -> list[dict[str, Any]] | pa.Table:
        """The page's items whose key this read has not delivered yet (a table stays a table)."""
        mask = []
        for item_key in page_keys(page, self.key):
            new = item_key not in read.keys
            if new:
                read.keys.add(item_key)
            mask.append(new)
        if page.table is not None:
            return page.table if all(mask) else page.table.filter(pa.array(mask, pa.bool_()))
        return [item for item, new in zip(page.items, mask, strict=True) if new]

    def _too_big(self, read: _WindowRead, page: Page) -> bool:
        """Split a window holding more than `max_window_rows` into parts of about half that many.

        The parts are equal in time, so uneven data may leave some still too big (they split again
        when their first page arrives). Cutting in many parts at once rather than in halves means
        fewer rounds of first pages: a first load whose data sits in the last month of a window
        starting in 2015 took about ten rounds of two requests each when halving. At least
        `concurrency` parts, so that their first pages fill every request slot.
        """
        window, limit = read.window, self.client.options.max_window_rows
        if window is None or page.total <= limit or not window.splittable:
            return False
        self.stats.add(splits=1)
        parts = max(2, self.client.options.concurrency, -(-page.total // max(1, limit // 2)))
        for part in self._split_from_first_row(window, page, min(MAX_SPLIT_PARTS, parts)):
            self.queue.append((_WindowRead(part, attempt=0), 0))
        return True

    def _split_from_first_row(self, window: Window, page: Page, parts: int) -> tuple[Window, ...]:
        """`window` in `parts` parts, cut evenly over the time from its first row to its end.

        Pages sorted ascending on a date start with the window's earliest row: a first load from
        2015 whose rows are all in the last month is cut over that month, not over eleven years of
        empty parts. The first part reaches back to the window's start: when the API filters on
        another date, rows from before the first row's date are read there.
        """
        begins = self._first_sort_value(page)
        if begins is None or not window.start + MIN_WINDOW < begins < window.end - MIN_WINDOW:
            return window.split(parts)
        first, *rest = Window(whole_ms(begins), window.end).split(parts)
        return (Window(window.start, first.end), *rest)

    def _first_sort_value(self, page: Page) -> datetime | None:
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

    def _plan(self, read: _WindowRead, first: Page) -> None:
        read.total = first.total
        self.stats.add(expected=first.total)
        read.step = first.count or first.requested
        read.outstanding = 1
        read.scheduled.add(0)
        for offset in range(first.count, first.total, read.step) if first.count else ():
            self._schedule(read, offset)

    def _schedule(self, read: _WindowRead, offset: int) -> None:
        read.scheduled.add(offset)
        read.outstanding += 1
        self.queue.append((read, offset))

    def _fill_gap(self, read: _WindowRead, offset: int, received: int) -> None:
        """A short page (a cap below our limit, or an odd size): fetch from where it really ended."""
        if received == 0:
            return
        end = offset + received
        next_planned = min((o for o in read.scheduled if o > offset), default=read.total)
        if end < min(next_planned, read.total) and end not in read.scheduled:
            self._schedule(read, end)

    def _finish(self, read: _WindowRead) -> None:
        if read.consistent():
            return
        log.info("window %s did not add up (totals %s, %d distinct of %d); reading again", read.window, read.totals, len(read.keys), read.total)
        if read.attempt + 1 < self.client.options.window_attempts:
            self.stats.add(rereads=1)
            self.queue.append((_WindowRead(read.window, attempt=read.attempt + 1), 0))
        elif read.window is not None and read.window.splittable:
            self.stats.add(splits=1)
            for half in read.window.split():
                self.queue.append((_WindowRead(half, attempt=0), 0))
        else:
            raise ApiError(
                f"pages of {self.client.base_url}{self.path} did not add up to their total after "
                f"{read.attempt + 1} reads (data changing faster than it can be paged); run again"
            )


def _page_fields(body: Any, path: str) -> tuple[list[dict[str, Any]], int]:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise GarbageResponse(f"JSON without an 'items' list ({type(body).__name__})")
    items = body["items"]
    total = body.get("total")
    if not isinstance(total, int):
        total = body.get("offset", 0) + len(items)  # no total: treat this page as the last
    return items, total


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def _error_message(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.reason_phrase or "no message"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or response.reason_phrase)
    return response.reason_phrase


def _describe(err: Exception) -> str:
    if isinstance(err, _Retryable):
        return str(err)
    if isinstance(err, httpx.TimeoutException):
        return f"timed out ({type(err).__name__})"
    if isinstance(err, httpx.TransportError):
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return str(err)
