"""HTTP client for one data holder: mTLS, bearer / private_key_jwt tokens, version negotiation, errors.

Secrets (tokens, private keys, client assertions) never appear in messages or logs.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from concord_pipelines.cdr_metrics import settings
from concord_pipelines.cdr_metrics.config import HolderConfig
from concord_pipelines.errors import ApiError, ConfigError
from concord_pipelines.retry import RetryPolicy, retry_after_seconds

log = logging.getLogger(__name__)

_URN = re.compile(r"urn:au-cds:error:cds-all:(.+)$")


@dataclass(frozen=True)
class _Attempt:
    """One try of a request: the answer (None when there was none) and what to say if it is the last."""

    response: httpx.Response | None
    problem: str
    retry_after: str | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class MetricsResponse:
    version: int
    payload: dict[str, Any]
    seconds: float


def client_assertion(holder: HolderConfig, now: float | None = None) -> str:
    """private_key_jwt client assertion: iss = sub = client_id, aud = token endpoint, jti, iat, exp."""
    issued = int(now if now is not None else time.time())
    claims = {
        "iss": holder.client_id,
        "sub": holder.client_id,
        "aud": holder.token_endpoint,
        "jti": str(uuid.uuid4()),
        "iat": issued,
        "exp": issued + settings.CLIENT_ASSERTION_LIFETIME_S,
    }
    headers = {"kid": holder.key_id} if holder.key_id else None
    try:
        return jwt.encode(claims, holder.signing_key(), algorithm=holder.signing_alg, headers=headers)
    except (ValueError, TypeError, jwt.PyJWTError) as err:
        # The message names the problem class only; it never echoes the key.
        raise ConfigError(
            f"holder {holder.name}: cannot sign the client assertion with {holder.signing_alg} "
            f"({type(err).__name__}); check that the private key is a PEM key matching signing_alg"
        ) from None


def tls_context(holder: HolderConfig) -> ssl.SSLContext:
    """Trust the holder's CA (or the system store) and present the mTLS client certificate if configured."""
    try:
        context = ssl.create_default_context(cafile=holder.ca) if holder.ca else ssl.create_default_context()
        if holder.cert:
            context.load_cert_chain(holder.cert, holder.key)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"holder {holder.name}: cannot load TLS files (cert/key/ca): {err}") from None
    return context


def range_text(x_v: int, x_min_v: int | None) -> str:
    return f"{x_min_v}..{x_v}" if x_min_v is not None and x_min_v < x_v else f"{x_v}..{x_v}"


class HolderClient:
    """`with HolderClient(holder) as c: c.get_metrics(x_v, x_min_v, period)`."""

    def __init__(self, holder: HolderConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.holder = holder
        self._http = httpx.Client(
            verify=tls_context(holder),
            timeout=holder.timeout,
            transport=transport,
            headers={"Accept": "application/json"},
        )
        self._token: str | None = None
        # Retry-After may ask for anything up to the budget: waiting less would only earn another 429.
        self._policy = RetryPolicy(
            max_retries=holder.max_attempts - 1,
            backoff_base=settings.BACKOFF_BASE_S,
            backoff_max=settings.BACKOFF_MAX_S,
            retry_after_max=holder.retry_budget,
        )
        self._deadline = time.monotonic() + holder.retry_budget
        self.gave_up_after: str | None = None  # "N attempts" when the last answer was still retryable

    def __enter__(self) -> HolderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    # --- auth -------------------------------------------------------------------------------
    def access_token(self) -> str | None:
        if self._token is None:
            self._token = self.holder.bearer_token() or (
                self._fetch_token() if self.holder.token_endpoint else None
            )
        return self._token

    def _fetch_token(self) -> str:
        h = self.holder
        form = {
            "grant_type": "client_credentials",
            "client_id": h.client_id,
            "client_assertion_type": settings.CLIENT_ASSERTION_TYPE,
            "client_assertion": client_assertion(h),
            "scope": settings.SCOPE,
        }
        response = self._send("POST", h.token_endpoint or "", data=form)
        if response.status_code != 200:
            raise ApiError(
                f"holder {h.name}: token endpoint refused client_credentials: {_oauth_error(response)}"
            )
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise ApiError(f"holder {h.name}: token endpoint answered 200 without an access_token") from None
        if not isinstance(token, str) or not token:
            raise ApiError(f"holder {h.name}: token endpoint returned an empty access_token")
        return token

    # --- metrics ----------------------------------------------------------------------------
    def get_metrics(self, x_v: int, x_min_v: int | None, period: str) -> MetricsResponse:
        headers = {"x-v": str(x_v)}
        if x_min_v is not None:
            headers["x-min-v"] = str(x_min_v)
        token = self.access_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        response = self._send("GET", self.holder.metrics_url, params={"period": period}, headers=headers)
        if response.status_code != 200:
            raise ApiError(self._error_message(response, x_v, x_min_v))
        payload = _json_object(response)
        if payload is None:  # e.g. an HTML maintenance page served with 200 by a gateway
            raise ApiError(
                f"holder {self.holder.name}: not the metrics API right now (200 {_body_hint(response)}); "
                "check base_url, or run later if the holder is down for maintenance"
            )
        version = self._served_version(response, x_v, x_min_v)
        return MetricsResponse(version, payload, time.monotonic() - started)

    def _served_version(self, response: httpx.Response, x_v: int, x_min_v: int | None) -> int:
        name, raw = self.holder.name, response.headers.get("x-v")
        if raw is None:
            raise ApiError(
                f"holder {name}: the response has no x-v header, so the payload version is unknown"
            )
        if not raw.strip().isdigit():
            raise ApiError(f"holder {name}: x-v response header is not an integer: {raw[:20]!r}")
        version = int(raw)
        low = x_min_v if x_min_v is not None and x_min_v < x_v else x_v
        if not low <= version <= x_v:
            raise ApiError(f"holder {name} served version {version}; asked for {range_text(x_v, x_min_v)}")
        if version not in settings.SUPPORTED_VERSIONS:
            supported = f"{settings.SUPPORTED_VERSIONS[0]}..{settings.SUPPORTED_VERSIONS[-1]}"
            raise ApiError(
                f"holder {name} served version {version}, which this connector cannot parse ({supported})"
            )
        return version

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with retries: 429, 5xx, timeouts and connection errors, within the holder's budget.

        Each wait is the shared policy's (never shorter than the backoff, `Retry-After` in seconds or as an
        HTTP date honoured); a wait or attempt that would overrun `retry_budget` is not started.
        """
        h = self.holder
        for attempt in range(h.max_attempts):
            outcome = self._attempt(method, url, **kwargs)
            if outcome.response is not None and not _retryable(outcome.response.status_code):
                return outcome.response
            delay = self._policy.delay(attempt, outcome.retry_after)
            over_budget = time.monotonic() + delay > self._deadline
            if attempt + 1 == h.max_attempts or over_budget:
                return self._give_up(url, attempt + 1, outcome, over_budget)
            log.warning(
                "holder %s: %s %s: %s (attempt %d of %d), retrying in %.1fs",
                h.name, method, _origin(url), outcome.problem, attempt + 1, h.max_attempts, delay,
            )  # fmt: skip
            time.sleep(delay)
        raise AssertionError("unreachable: max_attempts >= 1")

    def _attempt(self, method: str, url: str, **kwargs: Any) -> _Attempt:
        """One try, its timeout cut to what is left of the budget; transient failures become an _Attempt."""
        timeout = max(0.001, min(self.holder.timeout, self._deadline - time.monotonic()))
        try:
            response = self._request(method, url, timeout, **kwargs)
        except httpx.TimeoutException:
            return _Attempt(None, f"no answer within {round(timeout, 2):g}s", timed_out=True)
        except httpx.TransportError as err:
            if _is_certificate_error(err):  # not transient: do not retry
                raise ApiError(
                    f"holder {self.holder.name}: cannot reach {_origin(url)}: {_transport_reason(err)}"
                ) from None
            return _Attempt(None, _transport_reason(err))
        status = response.status_code
        return _Attempt(response, f"HTTP {status}", retry_after=response.headers.get("Retry-After"))

    def _request(self, method: str, url: str, timeout: float, **kwargs: Any) -> httpx.Response:
        """The response, read within `timeout` seconds of wall time (httpx alone bounds each read, not the sum)."""
        deadline = time.monotonic() + timeout
        with self._http.stream(method, url, timeout=timeout, **kwargs) as streamed:
            if streamed.is_stream_consumed:  # a transport that hands over complete responses
                return streamed
            body = bytearray()
            for chunk in streamed.iter_raw():
                body += chunk
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("body not complete in time", request=streamed.request)
        # raw bytes + the original headers: the new response decodes gzip etc. itself
        return httpx.Response(
            streamed.status_code, headers=streamed.headers, content=bytes(body), request=streamed.request
        )

    def _give_up(self, url: str, attempts: int, last: _Attempt, over_budget: bool) -> httpx.Response:
        """The last retryable answer goes back to the caller's error message; anything else is raised here."""
        h, tries = self.holder, f"{attempts} attempt{'s' if attempts > 1 else ''}"
        asked = retry_after_seconds(last.retry_after)
        if over_budget and asked is not None and time.monotonic() + asked > self._deadline:
            raise ApiError(
                f"holder {h.name}: {last.problem} asking to retry in {asked:.0f}s (Retry-After), beyond its "
                f"retry_budget of {h.retry_budget:g}s; raise retry_budget or run later"
            )
        if last.response is not None and last.response.status_code == 429:
            raise ApiError(
                f"holder {h.name}: still rate limited (HTTP 429) after {tries}; "
                "raise max_attempts / retry_budget or run later"
            )
        if last.response is not None:
            self.gave_up_after = tries
            return last.response
        limits = f"{tries}, timeout {h.timeout:g}s, retry_budget {h.retry_budget:g}s"
        fix = (
            "raise timeout if the holder is just slow"
            if last.timed_out
            else "check base_url and that the holder is up"
        )
        raise ApiError(f"holder {h.name}: cannot reach {_origin(url)}: {last.problem} ({limits}); {fix}")

    def _error_message(self, response: httpx.Response, x_v: int, x_min_v: int | None) -> str:
        name, status = self.holder.name, response.status_code
        errors = _cds_errors(response)
        codes = {m.group(1) for e in errors if (m := _URN.match(str(e.get("code", ""))))}
        detail = "; ".join(_clean(str(e.get("detail") or e.get("title") or "")) for e in errors)
        if status == 406 or "Header/UnsupportedVersion" in codes:
            return _unsupported_message(name, response, errors, x_v, x_min_v, detail)
        if "Header/InvalidVersion" in codes:
            return f"holder {name} rejected the version headers (x-v {x_v}, x-min-v {x_min_v}): {detail}"
        if status in (401, 403):
            return f"holder {name} refused access (HTTP {status}): check the token, client certificate and scope {settings.SCOPE}"
        after = f" (after {self.gave_up_after})" if self.gave_up_after else ""
        if errors:
            label = ", ".join(sorted(codes)) or "error"
            return f"holder {name} answered HTTP {status}{after} {label}: {detail}"
        return f"holder {name} answered HTTP {status}{after}: {_body_hint(response)}"


def _unsupported_message(
    name: str,
    response: httpx.Response,
    errors: list[dict[str, Any]],
    x_v: int,
    x_min_v: int | None,
    detail: str,
) -> str:
    """406: the holder's range from its error structure or headers, never from free text (it often echoes ours)."""
    asked = range_text(x_v, x_min_v)
    low = x_min_v if x_min_v is not None and x_min_v < x_v else x_v
    supported = _reported_versions(response, errors)
    if supported is not None and not any(low <= v <= x_v for v in supported):
        return f"holder {name} supports versions {_versions_text(supported)}; asked for {asked}"
    said = f' (it says: "{detail[:160]}")' if detail else ""
    return (
        f"holder {name} supports none of the versions asked for ({asked}); which it supports is unknown{said}"
    )


_LIST_KEYS = {"supportedversions", "versions", "supported", "availableversions", "versionssupported"}
_LOW_KEYS = {"xminv", "minv", "minversion", "minsupportedversion", "minimumversion", "lowestversion", "min"}
_HIGH_KEYS = {"xv", "maxv", "maxversion", "maxsupportedversion", "maximumversion", "highestversion", "max"}
_SPAN = re.compile(r"\s*(\d+)\s*(?:\.\.|-|to)\s*(\d+)\s*")


def _reported_versions(response: httpx.Response, errors: list[dict[str, Any]]) -> list[int] | None:
    """Versions a 406 says the holder supports: `errors[].meta` first, then x-min-v/x-v response headers."""
    for error in errors:
        meta = error.get("meta")
        if isinstance(meta, dict) and (found := _versions_in(meta)):
            return found
    return _span(_positive(response.headers.get("x-min-v")), _positive(response.headers.get("x-v")))


def _versions_in(meta: dict[str, Any]) -> list[int] | None:
    keys = {str(k).lower().replace("-", "").replace("_", ""): v for k, v in meta.items()}
    for key in _LIST_KEYS & keys.keys():
        value = keys[key]
        if isinstance(value, dict):
            return _versions_in(value)
        if isinstance(value, list):
            found = sorted({n for v in value if (n := _positive(v)) is not None})
            return found or None
        if isinstance(value, str) and (m := _SPAN.fullmatch(value)):
            return _span(int(m[1]), int(m[2]))
        if (n := _positive(value)) is not None:
            return [n]
    low = next((_positive(keys[k]) for k in _LOW_KEYS & keys.keys()), None)
    high = next((_positive(keys[k]) for k in _HIGH_KEYS & keys.keys()), None)
    return _span(low, high)


def _span(low: int | None, high: int | None) -> list[int] | None:
    """x-min-v/x-v style bounds; one bound alone means just that version (all we can honestly say)."""
    if low is None and high is None:
        return None
    low, high = low or high, high or low
    assert low is not None and high is not None
    return list(range(min(low, high), max(low, high) + 1)) if abs(high - low) < 1000 else None


def _positive(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        return int(value) or None
    return None


def _versions_text(versions: list[int]) -> str:
    contiguous = versions == list(range(versions[0], versions[-1] + 1))
    return f"{versions[0]}..{versions[-1]}" if contiguous else ", ".join(map(str, versions))


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:  # also UnicodeDecodeError
        return None
    return body if isinstance(body, dict) else None


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _body_hint(response: httpx.Response) -> str:
    """What came back, short: `text/html "Down for maintenance"`, or the start of a non-HTML body."""
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    text = response.text if response.content else ""
    if "html" in kind or text.lstrip()[:1] == "<":
        title = _TITLE.search(text)
        return f'{kind} "{_clean(title.group(1))[:80]}"' if title else f"{kind} page"
    snippet = _clean(text)[:160]
    return f"{kind}: {snippet}" if snippet else f"{kind}, empty body"


def _cds_errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"HTTP {response.status_code} {body.get('error')}: {_clean(str(body.get('error_description', '')))}"
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"


def _retryable(status: int) -> bool:
    return status == 429 or (status >= 500 and status not in settings.PERMANENT_5XX)


def _origin(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{'' if parsed.port is None else f':{parsed.port}'}{parsed.path}"


def _transport_reason(err: httpx.TransportError) -> str:
    reason = _clean(str(err))[:200] or type(err).__name__
    if isinstance(err, httpx.RemoteProtocolError | httpx.ReadError) and err.request.url.scheme == "https":
        reason += " (if the holder requires mTLS, check cert and key)"
    return reason


def _is_certificate_error(err: Exception) -> bool:
    """Certificate verification failures are not transient: do not retry them."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(err)


def _clean(text: str) -> str:
    return " ".join(text.split())
