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

from pipelines.cdr_metrics import settings
from pipelines.cdr_metrics.config import HolderConfig
from pipelines.errors import ApiError, ConfigError

log = logging.getLogger(__name__)

_URN = re.compile(r"urn:au-cds:error:cds-all:(.+)$")
_RANGE = re.compile(r"(\d+)\s*\.\.\s*(\d+)")


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
        version = self._served_version(response, x_v, x_min_v)
        try:
            payload = response.json()
        except ValueError:
            raise ApiError(f"holder {self.holder.name}: answered 200 with a body that is not JSON") from None
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
        for attempt in range(1, settings.MAX_ATTEMPTS + 1):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as err:
                if attempt == settings.MAX_ATTEMPTS or _is_certificate_error(err):
                    raise ApiError(
                        f"holder {self.holder.name}: cannot reach {_origin(url)}: {_transport_reason(err)}"
                    ) from None
                delay = 0.5 * attempt
            else:
                if response.status_code not in settings.RETRY_STATUSES or attempt == settings.MAX_ATTEMPTS:
                    return response
                delay = _retry_after(response, 0.5 * attempt)
            log.warning(
                "holder %s: %s %s failed (attempt %d), retrying in %.1fs",
                self.holder.name,
                method,
                _origin(url),
                attempt,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _error_message(self, response: httpx.Response, x_v: int, x_min_v: int | None) -> str:
        name, status = self.holder.name, response.status_code
        asked = range_text(x_v, x_min_v)
        errors = _cds_errors(response)
        codes = {m.group(1) for e in errors if (m := _URN.match(str(e.get("code", ""))))}
        detail = "; ".join(_clean(str(e.get("detail") or e.get("title") or "")) for e in errors)
        if status == 406 or "Header/UnsupportedVersion" in codes:
            found = _RANGE.findall(detail)
            if found:
                return f"holder {name} supports versions {found[-1][0]}..{found[-1][1]}; asked for {asked}"
            return f"holder {name} supports none of the versions asked for ({asked}): {detail or 'HTTP 406'}"
        if "Header/InvalidVersion" in codes:
            return f"holder {name} rejected the version headers (x-v {x_v}, x-min-v {x_min_v}): {detail}"
        if status in (401, 403):
            return f"holder {name} refused access (HTTP {status}): check the token, client certificate and scope {settings.SCOPE}"
        if errors:
            label = ", ".join(sorted(codes)) or "error"
            return f"holder {name} answered HTTP {status} {label}: {detail}"
        return (
            f"holder {name} answered HTTP {status}: {_clean(response.text)[:200] or response.reason_phrase}"
        )


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


def _retry_after(response: httpx.Response, default: float) -> float:
    raw = response.headers.get("Retry-After", "")
    return min(float(raw), settings.MAX_RETRY_AFTER_S) if raw.replace(".", "", 1).isdigit() else default


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
