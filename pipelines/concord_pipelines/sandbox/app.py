"""Starlette app of the Concord sandbox: the Privacy API under /privacy-v1, admin endpoints under /_sandbox.

Behaviour choices where the reference is silent (see also concord_pipelines.sandbox.state for date filters):
* auth: `x-api-key` missing -> 401, wrong -> 403; checked before routing, so an unauthenticated request
  to an unknown path is a 401 too. openapi.json needs no key.
* a malformed organization/project id (not a UUID) -> 422 (what a Joi `uuid` path validator does); a
  well-formed but unknown one -> 404. Unknown ids inside `projectIds` simply match nothing.
* every error, including 404 for unknown routes and 405, is `{"statusCode", "error", "message"}`.
* unknown query parameters are ignored; `limit` 1..1000 and `offset` >= 0 else 422; `sort` must be a
  known field of the resource and `order` asc|desc (case-insensitive) else 422.
* list filters accept repeated parameters (`projectIds=a&projectIds=b`) and comma-separated values.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from concord_pipelines.sandbox import data as d
from concord_pipelines.sandbox.metrics import dashboard
from concord_pipelines.sandbox.openapi import build_openapi
from concord_pipelines.sandbox.profiles import Profiles
from concord_pipelines.sandbox.state import SORTS, ListQuery, SandboxState

log = logging.getLogger(__name__)

PREFIX = "/privacy-v1"
ADMIN = "/_sandbox"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ID_SEGMENT = re.compile(r"/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?=/|$)")
ENUMS = {
    "consentState": d.CONSENT_STATES,
    "consentAction": d.CONSENT_ACTIONS,
    "category": d.CATEGORIES,
    "status": None,  # resource-specific, validated loosely (free string in the reference)
    "consentMode": d.CONSENT_MODES,
}
EVENT_FILTERS = ("category", "subcategory", "label", "consentState", "consentAction", "geography", "sessionId",
                 "submitter", "concordId", "domain")
SPLIT_FILTERS = frozenset(("projectIds", "category", "subcategory", "consentState", "consentAction", "status",
                           "request", "resolutionStatus"))
MAX_LEN_64 = frozenset(("submitter", "sessionId", "geography", "concordId"))
Send = Callable[[dict], Awaitable[None]]
MAX_OFFSET = 2**31 - 1  # int32 like the real validator; larger values would overflow JSON encoders


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps({"statusCode": status, "error": HTTPStatus(status).phrase, "message": message})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(error_body(status, message), status, headers=headers, media_type="application/json")


def json_response(payload: Any) -> Response:
    return Response(orjson.dumps(payload), media_type="application/json")


# ---- query parsing --------------------------------------------------------------------------------------
def _values(request: Request, name: str) -> tuple[str, ...]:
    raw = request.query_params.getlist(name) or request.query_params.getlist(name + "[]")
    if name in SPLIT_FILTERS:
        raw = [part for value in raw for part in value.split(",")]
    return tuple(v.strip() for v in raw if v.strip())


def _int(request: Request, name: str, default: int, low: int, high: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(422, f'"{name}" must be an integer') from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ApiError(422, f'"{name}" must be {bound}')
    return value


def _date(request: Request, name: str, required: bool = False) -> int | None:
    text = request.query_params.get(name)
    if not text:
        if required:
            raise ApiError(422, f'"{name}" is required')
        return None
    try:
        return d.parse_time(text)
    except (ValueError, OverflowError):
        raise ApiError(422, f'"{name}" must be an ISO-8601 date-time') from None


def list_query(request: Request, resource: str, filters: tuple[str, ...], dated: bool,
               profiles: Profiles) -> ListQuery:
    query = ListQuery(
        offset=_int(request, "offset", 0, 0, MAX_OFFSET),
        limit=_int(request, "limit", 100, 1, 1000),
        start=_date(request, "startDate") if dated else None,
        end=_date(request, "endDate") if dated else None,
        date_field=profiles.date_field(resource),
        shuffle_ties=profiles.has("unstable-ties"),
    )
    refusal = profiles.window_error(query.offset, query.limit)
    if refusal:
        raise ApiError(400, refusal)
    if not profiles.has("ignore-sort"):  # else: default order, whatever sort/order say
        query.sort, query.desc = _order(request, resource)
    for name in filters:
        values = _values(request, name)
        if not values:
            continue
        _check_filter(name, values)
        query.filters[name] = values
    cap = request.scope.get("sandbox.cap")
    if cap:
        query.limit = min(query.limit, int(cap))  # the silent page-size cap fault
    return query


def _order(request: Request, resource: str) -> tuple[str | None, bool]:
    """(sort field, None for the default order; descending?) from `sort`/`order`; 422 when invalid."""
    sort = request.query_params.get("sort") or None
    if sort is not None and sort not in SORTS[resource]:
        raise ApiError(422, f'"sort" must be one of {", ".join(SORTS[resource])}')
    order = (request.query_params.get("order") or ("desc" if sort is None else "asc")).lower()
    if order not in ("asc", "desc"):
        raise ApiError(422, '"order" must be one of asc, desc')
    return sort, order == "desc"


def _check_filter(name: str, values: tuple[str, ...]) -> None:
    allowed = ENUMS.get(name)
    for value in values:
        if allowed and value not in allowed:
            raise ApiError(422, f'"{name}" must be one of {", ".join(allowed)}')
        if name in MAX_LEN_64 and len(value) > 64:
            raise ApiError(422, f'"{name}" length must be less than or equal to 64 characters long')
        if name == "projectIds" and not UUID_RE.match(value):
            raise ApiError(422, '"projectIds" must contain valid GUIDs')


def page_bytes(offset: int, total: int | None, blobs: list[bytes]) -> bytes:
    """A consent-events page; `total` None leaves the key out (the no-total profiles)."""
    if total is None:
        return b'{"offset":%d,"count":%d,"items":[%b]}' % (offset, len(blobs), b",".join(blobs))
    return b'{"offset":%d,"count":%d,"total":%d,"items":[%b]}' % (offset, len(blobs), total, b",".join(blobs))


def page_dict(offset: int, total: int | None, items: list[dict]) -> dict:
    page: dict[str, Any] = {"offset": offset, "count": len(items), "total": total, "items": items}
    if total is None:
        del page["total"]
    return page


# ---- endpoints ------------------------------------------------------------------------------------------
def make_routes(state: SandboxState) -> list[Route]:
    def org(request: Request) -> None:
        value = request.path_params["org"]
        if not UUID_RE.match(value):
            raise ApiError(422, '"organizationId" must be a valid GUID')
        if value.lower() != state.org_id.lower():
            raise ApiError(404, "Organization not found")

    def project(request: Request) -> str:
        org(request)
        value = request.path_params["project"]
        if not UUID_RE.match(value):
            raise ApiError(422, '"projectId" must be a valid GUID')
        if value not in state.project_by_id:
            raise ApiError(404, "Project not found")
        return value

    profiles = state.profiles

    def refuse_first_project(resource: str, project_id: str | None) -> None:
        # scan-404 / types-403: the first project (by id) has no scan configured / no access to its types.
        status = {"tracker-scan-history": (404, "scan-404"), "consent-types": (403, "types-403")}.get(resource)
        if status is None or project_id is None or not profiles.has(status[1]):
            return
        if project_id == min(p["id"] for p in state.projects):
            profiles.count(status[1])
            message = "no tracker scan configured for this project" if status[0] == 404 else "Forbidden"
            raise ApiError(status[0], message)

    def small_list(resource: str, filters: tuple[str, ...], dated: bool, scoped: bool) -> Callable:
        async def endpoint(request: Request) -> Response:
            project_id = project(request) if scoped else org(request)
            refuse_first_project(resource, project_id)
            query = list_query(request, resource, filters, dated, profiles)
            total, items = state.list_items(resource, query, project_id)
            return json_response(page_dict(query.offset, profiles.reported_total(total, query.offset), items))
        return endpoint

    async def consent_events(request: Request) -> Response:
        if "project" in request.path_params:
            project_id = project(request)
        else:
            org(request)
            project_id = None
        query = list_query(request, "consent-events", ("projectIds", *EVENT_FILTERS), True, profiles)
        if project_id:
            wanted = query.filters.get("projectIds")
            query.filters["projectIds"] = (project_id,) if wanted is None or project_id in wanted else ()
        total, blobs = state.event_page(query)
        body = page_bytes(query.offset, profiles.reported_total(total, query.offset), blobs)
        # Data changing while a client pages: applied once this page is final but before it is sent, so
        # a client that has received page k always sees the changes on page k + 1 (no race).
        if request.scope.get("sandbox.inserts"):
            state.insert_events(int(request.scope["sandbox.inserts"]))
        if request.scope.get("sandbox.updates"):
            state.update_events(int(request.scope["sandbox.updates"]))
        return Response(body, media_type="application/json")

    async def metrics(request: Request) -> Response:
        org(request)
        start, end = _date(request, "startDate", True), _date(request, "endDate", True)
        assert start is not None and end is not None
        projects = _values(request, "project") + _values(request, "projectIds")
        for value in projects:
            if not UUID_RE.match(value):
                raise ApiError(422, '"project" must contain valid GUIDs')
        with state.lock:
            body = dashboard(state.events, state.requests, start, end, frozenset(projects) if projects else None)
        return json_response(body)

    base = PREFIX + "/organizations/{org}"
    return [
        Route(base + "/projects", small_list("projects", ("name", "status"), False, False)),
        Route(base + "/consent-events", consent_events),
        Route(base + "/projects/{project}/consent-events", consent_events),
        Route(base + "/projects/{project}/consent-types",
              small_list("consent-types", ("category", "label", "name", "status"), False, True)),
        Route(base + "/compliance-requests",
              small_list("compliance-requests", ("projectIds", "status", "request", "resolutionStatus"), True, False)),
        Route(base + "/compliance-requests-events",
              small_list("compliance-requests-events", ("complianceRequestId",), True, False)),
        Route(base + "/projects/{project}/tracker-scan-history",
              small_list("tracker-scan-history", ("id", "scanPeriod", "scheduledScanEnabled", "scheduledHour",
                                                  "scheduledDayOfWeek", "scheduledDayOfMonth"), False, True)),
        Route(base + "/metrics", metrics),
        Route(base + "/data-systems", small_list("data-systems", ("status",), False, False)),
        Route(base + "/projects/{project}/regions",
              small_list("regions", ("name", "consentMode", "status"), False, True)),
    ]


def make_admin_routes(state: SandboxState) -> list[Route]:
    async def body(request: Request) -> dict:
        raw = await request.body()
        try:
            payload = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            raise ApiError(400, "body must be JSON") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "body must be a JSON object")
        return payload

    async def faults(request: Request) -> Response:
        if request.method == "PUT":
            payload = await body(request)
            try:
                if "spec" in payload:
                    state.faults.configure(str(payload["spec"]), reset=bool(payload.get("reset", True)))
                else:
                    reset = bool(payload.pop("reset", False))
                    state.faults.configure(payload, reset=reset)
            except ValueError as err:
                raise ApiError(400, str(err)) from None
        return json_response(state.faults.snapshot())

    async def mutate(request: Request) -> Response:
        payload = await body(request)
        try:
            return json_response(state.mutate(**payload))
        except TypeError as err:
            raise ApiError(400, f"unknown mutate option: {err}") from None

    async def stats(request: Request) -> Response:
        return json_response(stats_snapshot(state))

    async def truth(request: Request) -> Response:
        try:
            return json_response(state.truth(request.path_params["resource"]))
        except KeyError:
            raise ApiError(404, "unknown resource") from None

    async def clock(request: Request) -> Response:
        if request.method == "POST":
            payload = await body(request)
            try:
                if "now" in payload:
                    state.set_now(str(payload["now"]))
                if "advance_seconds" in payload:
                    state.advance_clock(float(payload["advance_seconds"]))
            except (ValueError, TypeError) as err:
                raise ApiError(400, str(err)) from None
        return json_response({"now": state.now_iso(), "ticking": state.clock.ticking})

    async def profiles(request: Request) -> Response:
        if request.method == "PUT":
            payload = await body(request)
            try:
                state.profiles.set(str(payload.get("spec") or ""))
            except ValueError as err:
                raise ApiError(400, str(err)) from None
        return json_response(state.profiles.snapshot())

    async def info(request: Request) -> Response:
        return json_response({"org_id": state.org_id, "now": state.now_iso(), "events": len(state.events),
                              "projects": [p["id"] for p in state.projects], "seed": state.config.seed})

    return [
        Route(ADMIN + "/faults", faults, methods=["GET", "PUT"]),
        Route(ADMIN + "/profiles", profiles, methods=["GET", "PUT"]),
        Route(ADMIN + "/mutate", mutate, methods=["POST"]),
        Route(ADMIN + "/stats", stats),
        Route(ADMIN + "/truth/{resource}", truth),
        Route(ADMIN + "/clock", clock, methods=["GET", "POST"]),
        Route(ADMIN + "/info", info),
    ]


def stats_snapshot(state: SandboxState) -> dict:
    requests: dict[str, dict[str, int]] = {}
    for key, n in sorted(state.stats.items()):
        route, _, status = key.rpartition(" ")
        requests.setdefault(route, {})[status] = n
    return {"requests": requests, "total": sum(state.stats.values()), "faults": dict(state.faults.injected),
            "profiles": dict(state.profiles.counts)}


# ---- errors -----------------------------------------------------------------------------------------------
async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "Not Found" if exc.status_code == 404 else str(exc.detail)
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("sandbox bug on %s", request.url.path)
    return error_response(500, "Internal Server Error")


def create_app(state: SandboxState) -> SandboxApp:
    """The whole sandbox as an ASGI app (Starlette router wrapped in auth, fault and stats layers)."""
    routes: list[Route | Mount] = [
        Route(PREFIX + "/openapi.json", lambda request: json_response(build_openapi())),
        *make_routes(state),
        *make_admin_routes(state),
    ]
    holder = _cdr_holder()
    if holder is not None:
        routes.append(Mount("/cdr", app=holder))
    router = Starlette(routes=routes, exception_handlers={
        ApiError: _api_error, HTTPException: _http_error, Exception: _crash})
    return SandboxApp(router, state)


def _cdr_holder() -> Any:
    # Written by another helper; the sandbox must keep working when it is missing or broken.
    try:
        from concord_pipelines.sandbox.cdr_holder import create_holder_app

        return create_holder_app()
    except Exception as err:  # noqa: BLE001 - any failure just means "no /cdr mount"
        log.info("CDR holder not mounted: %s", err)
        return None


# ---- the ASGI wrapper: stats, auth, faults ---------------------------------------------------------------
class SandboxApp:
    """Counts requests, checks `x-api-key`, injects faults, then hands over to the Starlette router."""

    def __init__(self, router: Starlette, state: SandboxState) -> None:
        self.router = router
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        status = [0]

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                # uvicorn runs with date_header=False: the Date is the sandbox clock's (the connector
                # ends its windows at the server's time).
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", self._date_header(scope["path"]))]}
            await send(message)

        try:
            await self._handle(scope, receive, counting_send, send)
        finally:
            route = ID_SEGMENT.sub("/{id}", scope["path"])
            self.state.stats[f"{scope['method']} {route} {status[0] or 'dropped'}"] += 1

    async def _handle(self, scope: dict, receive: Callable, send: Send, raw_send: Send) -> None:
        path: str = scope["path"]
        guarded = path.startswith((PREFIX, ADMIN)) and path != PREFIX + "/openapi.json"
        if guarded:
            key = _header(scope, b"x-api-key")
            if key is None:
                await error_response(401, "Missing x-api-key header")(scope, receive, send)
                return
            if key != self.state.api_key:
                await error_response(403, "Forbidden")(scope, receive, send)
                return
        if guarded and path.startswith(PREFIX + "/"):
            if await self._profile_gate(scope, receive, send, key or ""):
                return
            await self._with_faults(scope, receive, send, raw_send)
        else:
            await self.router(scope, receive, send)

    def _date_header(self, path: str) -> bytes:
        # The CDR holder keeps the host's time (it is another server with its own clock semantics).
        ms = time.time() * 1000 if path.startswith("/cdr") else self.state.clock.now_ms()
        return formatdate(ms // 1000, usegmt=True).encode()

    async def _profile_gate(self, scope: dict, receive: Callable, send: Send, key: str) -> bool:
        """Latency and rate-limit profiles; True when the request was answered here (429)."""
        profiles = self.state.profiles
        latency = profiles.value("latency")
        if latency:
            await asyncio.sleep(latency / 1000)
        throttled = profiles.throttled(key)
        if throttled is None:
            return False
        if throttled == "rate-limit":
            retry_after = "0"
        else:  # a minute before both clocks, so it is in the past whichever one the client trusts
            past_ms = min(self.state.clock.now_ms(), time.time() * 1000) - 60_000
            retry_after = formatdate(past_ms // 1000, usegmt=True)
        await error_response(429, "Too Many Requests", {"Retry-After": retry_after})(scope, receive, send)
        return True

    async def _with_faults(self, scope: dict, receive: Callable, send: Send, raw_send: Send) -> None:
        faults = self.state.faults
        if not faults.switches:
            await self.router(scope, receive, send)
            return
        latency = faults.value("latency")
        if latency:
            await asyncio.sleep(latency / 1000)
        trigger = faults.pick_trigger()
        if trigger and trigger.isdigit():
            status = int(trigger)
            headers = {"Retry-After": f"{faults.retry_after:g}"} if status == 429 else None
            message = "Too Many Requests" if status == 429 else HTTPStatus(status).phrase
            await error_response(status, message, headers)(scope, receive, send)
        elif trigger == "drop":
            await drop_connection(raw_send)
        elif trigger == "html":
            await Response(HTML_PAGE, media_type="text/html")(scope, receive, send)
        elif trigger in ("truncate", "stall"):
            await self._mangled(scope, receive, send, trigger, faults.stall_seconds)
        else:
            await self._normal(scope, receive, send)

    async def _normal(self, scope: dict, receive: Callable, send: Send) -> None:
        faults = self.state.faults
        cap = faults.value("cap")
        if cap:
            scope["sandbox.cap"] = int(cap)
        if scope["path"].endswith("/consent-events"):
            scope["sandbox.inserts"] = faults.value("inserts")
            scope["sandbox.updates"] = faults.value("updates")
        await self.router(scope, receive, send)

    async def _mangled(self, scope: dict, receive: Callable, send: Send, how: str, stall: float) -> None:
        start: dict = {}
        chunks: list[bytes] = []

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.router(scope, receive, capture)
        body = b"".join(chunks)
        half = len(body) // 2
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        if how == "truncate":
            # Correct framing for the shortened body: the client gets a clean 200 whose JSON is cut off.
            headers.append((b"content-length", str(half).encode()))
            await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
            await send({"type": "http.response.body", "body": body[:half]})
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 200), "headers": headers})
        await send({"type": "http.response.body", "body": body[:half], "more_body": True})
        await asyncio.sleep(stall)  # longer than the client's read timeout
        await send({"type": "http.response.body", "body": body[half:]})


HTML_PAGE = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
             b"<p>The upstream server returned an invalid response.</p><hr><address>nginx</address></body></html>")


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def drop_connection(raw_send: Send) -> None:
    """Close the socket without sending a byte (uvicorn: the send callable is bound to its cycle)."""
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if transport is not None:
        transport.close()
        await asyncio.sleep(0.01)  # let connection_lost mark the cycle disconnected, so uvicorn stays quiet
        return
    # Other servers: start a response that promises more than it sends, then abort it.
    await raw_send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100000")]})
    await raw_send({"type": "http.response.body", "body": b'{"offset":0,', "more_body": True})
    raise ConnectionAbortedError("sandbox fault: dropped connection")
