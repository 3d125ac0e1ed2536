"""HTTP client for the Concord Privacy API: auth, timeouts, retries, pacing and error mapping.

Paging itself (how pages of a window are requested and checked) is `crawl.Crawl`; this module
owns the transport: one request and its retries, the pace a rate-limited server allows, the
server's clock (its `Date` header), and what each HTTP error means for the user.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pyarrow as pa

from concord_pipelines import __version__
from concord_pipelines.concord import settings
from concord_pipelines.concord.crawl import Crawl, DeepPagingRefused, Page, page_keys
from concord_pipelines.concord.records import read_page_arrow
from concord_pipelines.concord.windows import Window
from concord_pipelines.errors import ApiError, ConfigError
from concord_pipelines.retry import AdaptivePace, RetryPolicy

__all__ = ["ClientOptions", "ConcordClient", "Page", "ResourceStats", "page_keys"]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A 4xx for a page past the first is the server refusing to page that deep (Elasticsearch answers
# 400 "Result window is too large"; others 404, 413, 416 or 422): the window is cut, not failed.
DEEP_PAGING_STATUSES = frozenset({400, 404, 413, 416, 422})
CLOCK_WARNING = 300.0  # seconds between the host's clock and the server's that earn a warning


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
    max_offset: int = settings.MAX_OFFSET  # offsets stay below this (0: no limit); lowered when a server refuses one
    window_attempts: int = 2  # reads of a window that does not add up before it is split
    max_throttled: int = 18  # 429s one request may meet before the run gives up (about 1.5 min of them)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.backoff_base, self.backoff_max, self.retry_after_max)


@dataclass
class ResourceStats:
    """What the run summary reports per resource; updated from worker threads under a lock."""

    pages: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers (each also counted in retries)
    swept: int = 0  # rows found by the dateUpdated sweep that the window's date filter did not return
    rereads: int = 0
    splits: int = 0
    items: int = 0
    seconds: float = 0.0
    expected: int = 0  # rows the windows read so far said they hold (their first pages' totals): progress only
    skipped: list[str] = field(default_factory=list)  # projects left out of this resource, and why
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_state(self) -> dict[str, Any]:
        """The counters as kept in the resource's dlt state (`last_run`), where summaries read them."""
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    @classmethod
    def from_state(cls, saved: dict[str, Any]) -> ResourceStats:
        known = {f.name for f in fields(cls) if not f.name.startswith("_")}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def merge(self, other: ResourceStats) -> None:
        """Add another run's counters (a run loaded in several slices reports one line per resource)."""
        self.add(**{k: v for k, v in other.as_state().items() if k != "skipped"})
        self.skipped.extend(other.skipped)


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
        self._http_settings: dict[str, Any] = dict(
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
        self.pace = AdaptivePace(options.concurrency)
        self._clock_offset: float | None = None  # server time minus host time, from the last `Date` header
        # Both opened on first use and closed by `idle()`: a source that is built but never run, or has
        # finished, holds no thread and no connection.
        self._pool: ThreadPoolExecutor | None = None
        self._connections: httpx.Client | None = None
        self._pool_lock = threading.Lock()

    @property
    def _http(self) -> httpx.Client:
        with self._pool_lock:
            if self._connections is None:
                self._connections = httpx.Client(**self._http_settings)
            return self._connections

    def close(self) -> None:
        self.idle()

    def __enter__(self) -> ConcordClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, template: str, project: str | None = None) -> str:
        return template.format(org=self.options.organization_id, project=project or "")

    # -- single requests -------------------------------------------------------------------

    def get_json(self, path: str, params: dict[str, Any], stats: ResourceStats, decode: Callable[[httpx.Response], Any] | None = None) -> Any:
        """GET with retries on 429/5xx/connection errors/garbage bodies; 4xx become clear errors."""
        attempt = throttled = 0
        policy = self.options.retry_policy
        while True:
            stats.add(requests=1)
            try:
                with self.pace.slot():
                    response = self._http.get(path, params=params)
                self._observe_clock(response)
                if response.status_code == 429:
                    self.pace.throttled()
                    raise _Throttled(response)
                if response.status_code in RETRY_STATUSES:
                    raise _Retryable(response)
                if response.status_code >= 400:
                    raise self._client_error(response, path, params)
                self.pace.succeeded()
                return (decode or self._decode)(response)
            except _Throttled as err:
                # A rate limit is not a fault: its own, larger budget, and backoff that stops growing
                # at 8 x base (the pace, not one request's wait, is what spares the server).
                if throttled >= self.options.max_throttled:
                    raise self._exhausted(err, path, attempt + throttled) from None
                delay = policy.delay(min(throttled, 4), err.response.headers.get("retry-after"))
                stats.add(retries=1, throttled=1)
                throttled += 1
                time.sleep(delay)
            except (_Retryable, httpx.TransportError, GarbageResponse) as err:
                budget = self.options.connect_retries if isinstance(err, httpx.ConnectError) else self.options.max_retries
                if attempt >= budget:
                    raise self._exhausted(err, path, attempt + throttled) from None
                retry_after = err.response.headers.get("retry-after") if isinstance(err, _Retryable) else None
                delay = policy.delay(attempt, retry_after)
                log.info("retrying %s in %.2fs after %s", path, delay, _describe(err))
                stats.add(retries=1)
                attempt += 1
                time.sleep(delay)

    def get_page(self, path: str, params: dict[str, Any], offset: int, stats: ResourceStats, arrow: bool = False,
                 limit: int | None = None) -> Page:  # fmt: skip
        limit = limit or self.options.page_limit
        query = {**params, "offset": offset, "limit": limit}
        try:
            if arrow:
                page = self.get_json(path, query, stats, decode=lambda r: self._decode_arrow(r, offset, limit, path))
            else:
                items, total = _page_fields(self.get_json(path, query, stats), path)
                page = Page(offset=offset, requested=limit, total=total, items=items)
        except _DeepPage as refused:
            raise DeepPagingRefused(offset, limit, refused.status, refused.message) from None
        stats.add(pages=1)
        return page

    def count(self, path: str, params: dict[str, Any], stats: ResourceStats) -> int | None:
        """Rows matching `params`: the `total` of a one-item page (None when the server gives none)."""
        _, total = _page_fields(self.get_json(path, {**params, "offset": 0, "limit": 1}, stats), path)
        return total

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2 * max(1, self.options.concurrency), thread_name_prefix="concord-http")
            return self._pool.submit(fn, *args)

    def idle(self) -> None:
        """End the worker threads and close the connections (a later request opens them again): nothing
        outlives a run."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
            connections, self._connections = self._connections, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if connections is not None:
            connections.close()

    # -- the server's clock ------------------------------------------------------------------

    def _observe_clock(self, response: httpx.Response) -> None:
        header = response.headers.get("date")
        if not header:
            return
        try:
            server = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return
        if server is None:
            return
        if server.tzinfo is None:
            server = server.replace(tzinfo=UTC)
        # `Date` has whole seconds: the server's time is in [Date, Date + 1 s). The end of that second,
        # so rows written "now" are in this run with lag 0; later rows of that second are the lookback's.
        self._clock_offset = server.timestamp() + 1.0 - time.time()

    def server_now(self) -> datetime:
        """The server's time (from its `Date` header), asking it once if no answer has shown it yet.

        Windows end at the server's time, so a host clock that jumps ahead cannot move a cursor
        past rows that do not exist yet. Without a `Date` header the host's clock is used.
        """
        if self._clock_offset is None:
            self.get_json(self.path(settings.PROJECTS.endpoint), {"offset": 0, "limit": 1}, ResourceStats())
        if self._clock_offset is None:
            log.warning("the API sends no Date header: windows end at this host's clock")
            return datetime.now(tz=UTC)
        if abs(self._clock_offset) > CLOCK_WARNING:
            log.warning(
                "this host's clock is %.0f s %s the API server's: windows follow the server's clock; fix the host's (NTP)",
                abs(self._clock_offset), "behind" if self._clock_offset > 0 else "ahead of",
            )
        return datetime.fromtimestamp(time.time() + self._clock_offset, tz=UTC)

    def _decode_arrow(self, response: httpx.Response, offset: int, limit: int, path: str) -> Page:
        """Arrow's JSON reader first; a page it cannot read (mixed types, odd shape) takes the dict path."""
        try:
            total, table = read_page_arrow(response.content)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            items, total = _page_fields(self._decode(response), path)
            return Page(offset=offset, requested=limit, total=total, items=items)
        return Page(offset=offset, requested=limit, total=total if isinstance(total, int) else None, items=[], table=table)

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            kind = response.headers.get("content-type", "unknown content type").split(";")[0]
            raise GarbageResponse(f"a body that is not JSON ({kind}, {len(response.content)} bytes)") from None

    def _client_error(self, response: httpx.Response, path: str, params: dict[str, Any]) -> Exception:
        status, message = response.status_code, _error_message(response)
        org = self.options.organization_id
        if status in DEEP_PAGING_STATUSES and int(params.get("offset") or 0) > 0:
            return _DeepPage(status, message)
        if status in (403, 404) and "/projects/" in path:
            return ResourceUnavailable(status, path, message)
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
        yield from Crawl(self, path, params, key, stats, arrow).run(window, first_page)

    def get_json_each(self, path: str, queries: list[dict[str, Any]], stats: ResourceStats) -> Iterator[Any]:
        """One GET per query, `concurrency` at a time, answers in the order of `queries`."""
        futures = [self.submit(self.get_json, path, query, stats) for query in queries]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


class _Retryable(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class _Throttled(_Retryable):
    """A 429: the server's rate limit."""


class _DeepPage(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


class ResourceUnavailable(ConfigError):
    """A 403/404 on one project's sub-resource (no scan configured, no access to that project).

    The source skips that project for that resource and says so; organization-level 401/403/404
    stay fatal.
    """

    def __init__(self, status: int, path: str, message: str) -> None:
        super().__init__(f"{path} answered {status} ({message})")
        self.status, self.path = status, path


def _page_fields(body: Any, path: str) -> tuple[list[dict[str, Any]], int | None]:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise GarbageResponse(f"JSON without an 'items' list ({type(body).__name__})")
    total = body.get("total")
    return body["items"], total if isinstance(total, int) and not isinstance(total, bool) else None


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
