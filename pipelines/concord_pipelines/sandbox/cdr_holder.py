"""Sandbox CDR data holder: `GET /cds-au/v1/admin/metrics` (v2..v5) plus a private_key_jwt token endpoint.

Payloads are deterministic: every value is a hash of (seed, series, local date[, hour]), so a test can
recompute or compare what was served. The holder's clock can be moved (`state.clock.advance(days=1)`)
to simulate consecutive days; dates follow the holder's timezone (default Australia/Sydney).

    state = HolderState(seed=7, clock=HolderClock(start=datetime(2026, 11, 23, 9, tzinfo=UTC)))
    with CdrHolderServer(state) as srv:
        srv.url              # AdminBaseUri
        srv.token_endpoint   # POST client_credentials + private_key_jwt

Negotiation follows the standard: `x-v` mandatory positive integer (else 400 Header/InvalidVersion),
`x-min-v` optional positive integer (else 400), ignored when >= x-v; the highest supported version in
range is served with an `x-v` response header, else 406 Header/UnsupportedVersion.

By default it is a conformant holder; `HolderState` fields make it behave like real ones do
(`request_time_style`, `version_report`, `throttle_s`/`retry_after_style`, `failures`,
`extra_fields`, `maintenance_page`, `hang_s`), see docs/cdr_metrics.md.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import math
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from concord_pipelines.serve import BackgroundServer

METRICS_PATH = "/cds-au/v1/admin/metrics"
TOKEN_PATH = "/token"
SCOPE = "admin:metrics.basic:read"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["PS256", "RS256", "ES256"]
PERIODS = ("CURRENT", "HISTORIC", "ALL")
URN = "urn:au-cds:error:cds-all:"

TIERS = ("unauthenticated", "highPriority", "lowPriority", "unattended", "largePayload")
SECONDARY_TIERS = ("secondary", "largeSecondary")
STAGES = (
    "preIdentification",
    "preAuthentication",
    "preAccountSelection",
    "preAuthorisation",
    "rejected",
    "failedTokenExchange",
)


class HolderClock:
    """Frozen at `start` (or following real time when start is None), moved by `advance`/`set`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._start = start.astimezone(UTC) if start else None
        self._offset = timedelta()

    def now(self) -> datetime:
        with self._lock:
            base = self._start or datetime.now(UTC)
            return base + self._offset

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self._offset += timedelta(**delta)
        return self.now()

    def set(self, when: datetime) -> None:
        with self._lock:
            self._start, self._offset = when.astimezone(UTC), timedelta()


@dataclass
class HolderState:
    """Everything the sandbox holder serves; tests mutate it between requests."""

    name: str = "sandbox"
    seed: int = 1
    timezone: str = "Australia/Sydney"
    supported_versions: Iterable[int] = (2, 3, 4, 5)
    clock: HolderClock = field(default_factory=HolderClock)
    tokens: set[str] = field(default_factory=set)  # static bearer tokens accepted
    clients: dict[str, str] = field(default_factory=dict)  # client_id -> registered public key (PEM)
    require_token: bool | None = None  # None: required when tokens or clients are configured
    token_ttl_s: int = 300
    token_audiences: set[str] = field(default_factory=set)  # accepted besides the request URL
    payload_hook: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None  # e.g. break the schema
    served: list[dict[str, Any]] = field(default_factory=list)  # {"version", "period", "payload"} per 200
    requests: int = 0
    # How real holders differ (issue 17); the defaults are a conformant holder.
    request_time_style: str = (
        "utc"  # utc "...Z" | offset "local+11:00" | naive "local, no offset" | lowercase
    )
    version_report: str = (
        "meta"  # where a 406 says the supported range: meta (errors[].meta) | headers | none
    )
    throttle_s: float = 0.0  # answer 429 for this long after the first metrics request
    retry_after_style: str = "date"  # Retry-After of those 429s: date (HTTP date) | seconds
    failures: int = 0  # the first N metrics requests answer 503
    extra_fields: dict[str, Any] = field(
        default_factory=dict
    )  # merged into `data`: extensions, unknown metrics
    maintenance_page: bool = False  # answer 200 with an HTML maintenance page instead of the API
    hang_s: float = 0.0  # hold every metrics answer this long, or until the client hangs up
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each metrics request
    _throttled_until: float | None = field(default=None, repr=False)
    _issued: dict[str, float] = field(default_factory=dict, repr=False)
    _jti: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def token_required(self) -> bool:
        return bool(self.tokens or self.clients) if self.require_token is None else self.require_token

    def token_valid(self, token: str) -> bool:
        if token in self.tokens:
            return True
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is not None and expiry > time.time()

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._issued[token] = time.time() + self.token_ttl_s
        return token

    def use_jti(self, jti: str) -> bool:
        with self._lock:
            if jti in self._jti:
                return False
            self._jti.add(jti)
            return True


# --- negotiation ----------------------------------------------------------------------------------


class CdsError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        meta: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.meta, self.headers = meta, headers

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"code": URN + self.code, "title": self.title, "detail": self.detail}
        if self.meta:
            error["meta"] = self.meta
        return JSONResponse({"errors": [error]}, status_code=self.status, headers=self.headers)


def _positive_int(raw: str | None) -> int | None:
    if raw is None or not raw.isdigit() or not raw.isascii():
        return None
    value = int(raw)
    return value if value > 0 else None


def negotiate(x_v: str | None, x_min_v: str | None, supported: Iterable[int], report: str = "meta") -> int:
    """The version to serve, or CdsError 400 InvalidVersion / 406 UnsupportedVersion.

    A 406 tells the holder's own range (x-min-v..x-v) in `errors[].meta` (report="meta"), in x-min-v/x-v
    response headers ("headers") or not at all ("none"); its free-text detail only repeats what was
    asked, as real holders' often do, so clients must not read a range out of it.
    """
    high = _positive_int(x_v)
    if high is None:
        raise CdsError(
            400, "Header/InvalidVersion", "Invalid Version", f"x-v must be a positive integer, got {x_v!r}"
        )
    low = high
    if x_min_v is not None:
        minimum = _positive_int(x_min_v)
        if minimum is None:
            raise CdsError(
                400,
                "Header/InvalidVersion",
                "Invalid Version",
                f"x-min-v must be a positive integer, got {x_min_v!r}",
            )
        low = minimum if minimum < high else high  # x-min-v >= x-v: treat as absent
    versions = sorted(set(supported))
    candidates = [v for v in versions if low <= v <= high]
    if not candidates:
        own = {"x-min-v": str(versions[0]), "x-v": str(versions[-1])}
        raise CdsError(
            406,
            "Header/UnsupportedVersion",
            "Unsupported Version",
            f"Requested versions {low}..{high} are not supported",
            meta=own if report == "meta" else None,
            headers=own if report == "headers" else None,
        )
    return candidates[-1]


def check_period(raw: str | None) -> str:
    period = "ALL" if raw is None else raw
    if period not in PERIODS:
        raise CdsError(
            400, "Field/Invalid", "Invalid Field", f"period must be CURRENT, HISTORIC or ALL, got {raw!r}"
        )
    return period


# --- deterministic payloads ----------------------------------------------------------------------


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class _Day:
    """The holder's local view of `now`: today's date, elapsed hours and fraction of the day."""

    today: date
    elapsed_hours: int
    fraction: float
    tz: ZoneInfo

    @classmethod
    def at(cls, now: datetime, timezone: str) -> _Day:
        tz = ZoneInfo(timezone)
        local = now.astimezone(tz)
        midnight = datetime.combine(local.date(), datetime.min.time(), tz)
        elapsed = (now - midnight.astimezone(UTC)).total_seconds()
        length = hours_in_day(local.date(), tz) * 3600
        return cls(local.date(), int(elapsed // 3600), min(elapsed / length, 1.0), tz)


def hours_in_day(day: date, tz: ZoneInfo) -> int:
    """23, 24 or 25 depending on daylight-saving changes."""
    start = datetime.combine(day, datetime.min.time(), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
    return round((end - start).total_seconds() / 3600)


class _Builder:
    """Builds `{currentDay, previousDays}` series for one request, honouring `period`."""

    def __init__(self, seed: int, day: _Day, period: str) -> None:
        self.seed, self.day, self.period = seed, day, period

    def _series(self, value: Callable[[date, bool], Any], months: bool = False) -> dict[str, Any]:
        current, previous = ("currentMonth", "previousMonths") if months else ("currentDay", "previousDays")
        out: dict[str, Any] = {}
        if self.period in ("CURRENT", "ALL"):
            out[current] = value(self.day.today, True)
        if self.period in ("HISTORIC", "ALL"):
            if months:
                first = self.day.today.replace(day=1)
                dates = [_month_back(first, i + 1) for i in range(12)]
            else:
                dates = [self.day.today - timedelta(days=i + 1) for i in range(7)]
            out[previous] = [value(d, False) for d in dates]
        return out

    def _scale(self, current: bool) -> float:
        return self.day.fraction if current else 1.0

    def count(self, path: str, base: int = 1000) -> dict[str, Any]:
        return self._series(lambda d, cur: int(base * (0.5 + _unit(self.seed, path, d)) * self._scale(cur)))

    def number(self, path: str, base: float = 1.0) -> dict[str, Any]:
        def value(d: date, cur: bool) -> float:
            key = (d, self.day.elapsed_hours) if cur else (d,)
            return round(base * (0.5 + _unit(self.seed, path, *key)), 3)

        return self._series(value)

    def ratio(self, path: str, as_string: bool, months: bool = False) -> dict[str, Any]:
        def value(d: date, cur: bool) -> float | str:
            key = (d, self.day.elapsed_hours) if cur else (d,)
            rate = round(0.95 + 0.05 * _unit(self.seed, path, *key), 4)
            return f"{rate:.4f}" if as_string else rate

        return self._series(value, months)

    def hourly(self, path: str) -> dict[str, Any]:
        def value(d: date, cur: bool) -> list[str]:
            hours = self.day.elapsed_hours if cur else hours_in_day(d, self.day.tz)
            return [f"{0.9 + 0.1 * _unit(self.seed, path, d, h):.4f}" for h in range(hours)]

        return self._series(value)

    def by_status(self, path: str) -> dict[str, Any]:
        def value(d: date, cur: bool) -> dict[str, int]:
            return {s: int(40 * _unit(self.seed, path, s, d) * self._scale(cur)) for s in ("500", "503")}

        return self._series(value)

    def split(self, path: str, base: int = 100) -> dict[str, Any]:
        def value(d: date, cur: bool) -> dict[str, int]:
            return {
                k: int(base * _unit(self.seed, path, k, d) * self._scale(cur))
                for k in ("individual", "nonIndividual")
            }

        return self._series(value)

    def new_split(self, path: str) -> dict[str, Any]:
        def value(d: date, cur: bool) -> dict[str, dict[str, int]]:
            return {
                kind: {
                    k: int(100 * _unit(self.seed, path, kind, k, d) * self._scale(cur))
                    for k in ("individual", "nonIndividual")
                }
                for kind in ("onceOff", "ongoing")
            }

        return self._series(value)


def _month_back(first: date, months: int) -> date:
    index = first.year * 12 + first.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


def metrics_data(
    seed: int, now: datetime, timezone: str, version: int, period: str, request_time_style: str = "utc"
) -> dict[str, Any]:
    """The `data` object of a Get Metrics response of `version` (2..5) at `now`."""
    b = _Builder(seed, _Day.at(now, timezone), period)
    tiers = TIERS + (SECONDARY_TIERS if version >= 3 else ())
    data: dict[str, Any] = {"requestTime": request_time_text(now, timezone, request_time_style)}
    if version >= 4:
        data["availability"] = {
            k: b.ratio(f"availability.{k}", True, months=True)
            for k in ("aggregate", "unauthenticated", "authenticated")
        }
    else:
        data["availability"] = b.ratio("availability", False, months=True)
    if version == 5:
        data["performance"] = {"aggregate": b.ratio("performance.aggregate", True)}
        data["performance"].update({t: b.hourly(f"performance.{t}") for t in TIERS})
        data["performance"].update(
            {
                t: {s: b.hourly(f"performance.{t}.{s}") for s in ("primary", "secondary")}
                for t in SECONDARY_TIERS
            }
        )
    else:
        data["performance"] = b.ratio("performance", version == 4)
    data["invocations"] = {t: b.count(f"invocations.{t}", 5000) for t in tiers}
    data["averageResponse"] = {t: b.number(f"averageResponse.{t}", 0.4) for t in TIERS}
    if version >= 3:
        data["averageResponse"].update(
            {
                t: {s: b.number(f"averageResponse.{t}.{s}", 0.6) for s in ("primary", "secondary")}
                for t in SECONDARY_TIERS
            }
        )
    data["sessionCount"] = b.count("sessionCount", 800)
    for name, base in (("averageTps", 2.0), ("peakTps", 20.0)):
        if version >= 4:
            data[name] = {
                k: b.number(f"{name}.{k}", base) for k in ("aggregate", "unauthenticated", "authenticated")
            }
        else:
            data[name] = b.number(name, base)
    if version >= 4:
        data["errors"] = {"aggregate": b.count("errors.aggregate", 60)}
        data["errors"].update({k: b.by_status(f"errors.{k}") for k in ("unauthenticated", "authenticated")})
    else:
        data["errors"] = b.count("errors", 60)
    data["rejections"] = {k: b.count(f"rejections.{k}", 30) for k in ("authenticated", "unauthenticated")}
    if version >= 3:
        data["secondaryHolder"] = {k: b.count(f"secondaryHolder.{k}", 10) for k in ("errors", "rejections")}
    data["customerCount"] = int(10000 * (0.5 + _unit(seed, "customerCount", b.day.today)))
    data["recipientCount"] = int(50 * (0.5 + _unit(seed, "recipientCount", b.day.today)))
    if version >= 4:
        data["authorisations"] = _authorisations(b, seed, version)
    return data


def request_time_text(now: datetime, timezone: str, style: str = "utc") -> str:
    """`requestTime` as holders write it: conformant (utc, offset, lowercase) or without offset (naive)."""
    local = now.astimezone(ZoneInfo(timezone))
    if style == "offset":
        return local.isoformat()
    if style == "naive":  # local wall time, offset dropped: non-conformant but seen in practice
        return local.replace(tzinfo=None).isoformat()
    utc = now.astimezone(UTC).replace(tzinfo=None)
    if style == "lowercase":  # RFC 3339 allows t/z in lower case and any number of fractional digits
        return f"{utc:%Y-%m-%dt%H:%M:%S}.{utc.microsecond:06d}123z"
    return utc.isoformat() + "Z"


def _authorisations(b: _Builder, seed: int, version: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "activeAuthorisationCount": {
            k: int(5000 * _unit(seed, "active", k, b.day.today)) for k in ("individual", "nonIndividual")
        },
        "newAuthorisationCount": b.new_split("authorisations.new"),
        "revokedAuthorisationCount": b.split("authorisations.revoked"),
        "amendedAuthorisationCount": b.split("authorisations.amended"),
        "expiredAuthorisationCount": b.split("authorisations.expired"),
        "abandonedConsentFlowCount": b.count("authorisations.abandoned", 40),
    }
    if version >= 5:
        out["abandonmentsByStage"] = {s: b.count(f"authorisations.stage.{s}", 10) for s in STAGES}
    return out


# --- the app ---------------------------------------------------------------------------------------


def _unauthorized(detail: str) -> JSONResponse:
    # The standards leave 401 bodies to the holder; a CDS-shaped list keeps clients' parsing uniform.
    body = {"errors": [{"code": "401", "title": "Unauthorized", "detail": detail}]}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


MAINTENANCE_PAGE = """<!DOCTYPE html>
<html><head><title>Scheduled maintenance</title></head>
<body><h1>We'll be back soon</h1><p>Our services are being upgraded.</p></body></html>
"""


async def _hold(request: Request, seconds: float) -> None:
    """A hung holder: answer nothing for `seconds`, or until the client gives up and hangs up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not await request.is_disconnected():
        await asyncio.sleep(0.05)


def _outage(state: HolderState) -> Response | None:
    """503 for the first `failures` requests, then 429 while throttled (Retry-After as date or seconds)."""
    with state._lock:
        if state.failures > 0:
            state.failures -= 1
            return JSONResponse({"errors": []}, status_code=503, headers={"Retry-After": "0"})
        if not state.throttle_s:
            return None
        now = time.time()
        if state._throttled_until is None:
            state._throttled_until = now + state.throttle_s
        until = state._throttled_until
    if now >= until:
        return None
    when = math.ceil(until)  # an HTTP date has whole seconds: round up, never invite an early retry
    header = (
        email.utils.formatdate(when, usegmt=True)
        if state.retry_after_style == "date"
        else str(math.ceil(until - now))
    )
    body = {"errors": [{"code": "429", "title": "Too Many Requests", "detail": "slow down"}]}
    return JSONResponse(body, status_code=429, headers={"Retry-After": header})


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def create_holder_app(holder_state: HolderState | None = None) -> Starlette:
    """Starlette app serving `GET /cds-au/v1/admin/metrics` and `POST /token` for one holder."""
    state = holder_state or HolderState()

    async def metrics(request: Request) -> Response:
        state.requests += 1
        state.arrivals.append(time.monotonic())
        if state.hang_s:
            await _hold(request, state.hang_s)
        if state.maintenance_page:
            return HTMLResponse(MAINTENANCE_PAGE)  # a gateway's page, with 200, instead of the API
        if (outage := _outage(state)) is not None:
            return outage
        if state.token_required:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token:
                return _unauthorized("a bearer token is required")
            if not state.token_valid(token.strip()):
                return _unauthorized("the bearer token is unknown or expired")
        try:
            version = negotiate(
                request.headers.get("x-v"),
                request.headers.get("x-min-v"),
                state.supported_versions,
                state.version_report,
            )
            period = check_period(request.query_params.get("period"))
        except CdsError as err:
            return err.response()
        payload: dict[str, Any] = {
            "data": metrics_data(
                state.seed, state.clock.now(), state.timezone, version, period, state.request_time_style
            )
            | state.extra_fields,
            "links": {"self": str(request.url)},
            "meta": {},
        }
        if state.payload_hook:
            payload = state.payload_hook(version, payload)
        state.served.append({"version": version, "period": period, "payload": payload})
        return JSONResponse(payload, headers={"x-v": str(version)})

    async def token(request: Request) -> JSONResponse:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error("unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            return _oauth_error("invalid_client", "private_key_jwt client assertion required", 401)
        if SCOPE not in form.get("scope", "").split():
            return _oauth_error("invalid_scope", f"scope must include {SCOPE}")
        audience = {str(request.url.replace(query="")), *state.token_audiences}
        problem = _verify_assertion(state, form["client_assertion"], audience, form.get("client_id"))
        if problem:
            return _oauth_error("invalid_client", problem, 401)
        body = {
            "access_token": state.issue_token(),
            "token_type": "Bearer",
            "expires_in": state.token_ttl_s,
            "scope": SCOPE,
        }
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return Starlette(
        routes=[Route(METRICS_PATH, metrics, methods=["GET"]), Route(TOKEN_PATH, token, methods=["POST"])]
    )


def _verify_assertion(
    state: HolderState, assertion: str, audience: set[str], client_id: str | None
) -> str | None:
    """None when the client assertion is valid, else the reason (no secrets in it)."""
    try:
        claimed = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "client assertion is not a JWT"
    issuer = claimed.get("iss")
    key = state.clients.get(str(issuer))
    if key is None:
        return "unknown client"
    if client_id is not None and client_id != issuer:
        return "client_id does not match the assertion issuer"
    try:
        claims = jwt.decode(
            assertion,
            key,
            algorithms=ASSERTION_ALGORITHMS,
            audience=list(audience),
            issuer=issuer,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.PyJWTError as err:
        return f"client assertion rejected: {type(err).__name__}"
    if claims["sub"] != issuer:
        return "sub must equal iss"
    if not state.use_jti(str(claims["jti"])):
        return "client assertion replayed (jti already used)"
    return None


class CdrHolderServer:
    """`with CdrHolderServer(state) as srv:` the holder on loopback (http, or https/mTLS with ssl_* files)."""

    def __init__(
        self,
        state: HolderState | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_ca_certs: str | None = None,
        require_client_cert: bool = False,
    ) -> None:
        self.state = state or HolderState()
        options: dict[str, object] = {}
        if ssl_certfile:
            options.update(ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
            if ssl_ca_certs:
                options["ssl_ca_certs"] = ssl_ca_certs
            if require_client_cert:
                options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        self._scheme = "https" if ssl_certfile else "http"
        self._server = BackgroundServer(create_holder_app(self.state), host=host, port=port, **options)

    @property
    def url(self) -> str:
        return f"{self._scheme}://{self._server.host}:{self._server.port}"

    @property
    def token_endpoint(self) -> str:
        return self.url + TOKEN_PATH

    def start(self) -> CdrHolderServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> CdrHolderServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
