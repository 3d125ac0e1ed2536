"""Holder configuration: one entry per data holder, from dlt config, a TOML/JSON file or CLI flags.

TOML (`.dlt/config.toml`, or a file given with `--config`)::

    [[sources.cdr_metrics.holders]]        # in a --config file plain [[holders]] works too
    name = "bank_a"
    base_url = "https://admin.bank-a.example"   # AdminBaseUri
    timezone = "Australia/Sydney"
    token_env = "BANK_A_TOKEN"     # or a token in secrets.toml (below), or the token endpoint keys
    token_endpoint = "https://auth.bank-a.example/token"
    client_id = "register-client"
    private_key_path = "keys/register.pem"      # or private_key in secrets.toml (below)
    signing_alg = "PS256"          # RS256 | PS256 | ES256
    cert = "certs/client.pem"      # mTLS client certificate (+ key) and the CA bundle to trust
    key = "certs/client.key"
    ca = "certs/ca.pem"
    timeout = 30                   # seconds per HTTP attempt (connect + answer)
    max_attempts = 3               # per request; 429, 5xx, timeouts and connection errors are retried
    retry_budget = 120             # seconds this holder may take in all, waits included

Secrets go to `.dlt/secrets.toml`, per holder name (dlt keeps resolved *config* values in its trace,
secrets it does not)::

    [sources.cdr_metrics.credentials.bank_a]
    token = "..."                  # and/or private_key = "-----BEGIN PRIVATE KEY-----..."

A `--config FILE` may hold `token`/`private_key` inline (it is passed to the source directly).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from concord_pipelines.cdr_metrics import settings
from concord_pipelines.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class HolderConfig:
    name: str
    base_url: str
    timezone: str = settings.DEFAULT_TIMEZONE
    token: str | None = None
    token_env: str | None = None
    token_endpoint: str | None = None
    client_id: str | None = None
    private_key: str | None = None
    private_key_path: str | None = None
    signing_alg: str = settings.DEFAULT_SIGNING_ALGORITHM
    key_id: str | None = None
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    timeout: float = settings.TIMEOUT_S
    max_attempts: int = settings.MAX_ATTEMPTS
    retry_budget: float = settings.RETRY_BUDGET_S

    def __repr__(self) -> str:  # never show secrets
        return f"HolderConfig(name={self.name!r}, base_url={self.base_url!r}, timezone={self.timezone!r})"

    @property
    def metrics_url(self) -> str:
        return self.base_url.rstrip("/") + settings.METRICS_PATH

    def bearer_token(self) -> str | None:
        if self.token:
            return self.token
        if self.token_env:
            value = os.environ.get(self.token_env)
            if not value:
                raise ConfigError(
                    f"holder {self.name}: environment variable {self.token_env} (token_env) is not set"
                )
            return value
        return None

    def signing_key(self) -> str:
        if self.private_key:
            return self.private_key
        assert self.private_key_path
        try:
            return Path(self.private_key_path).expanduser().read_text()
        except OSError as err:
            raise ConfigError(
                f"holder {self.name}: cannot read private_key_path {self.private_key_path}: {err.strerror}"
            ) from None


_FIELDS = {f.name for f in fields(HolderConfig)}


def holder_from_mapping(raw: Mapping[str, Any]) -> HolderConfig:
    """Validate one holder entry; every problem becomes a ConfigError naming the holder and the fix."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"each holder must be a table/object with name, base_url, timezone; got {type(raw).__name__}"
        )
    label = raw.get("name") or "<unnamed>"
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"holder {label}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FIELDS))}"
        )
    values = {k: v for k, v in raw.items() if v is not None and v != ""}
    holder = HolderConfig(**values)
    _check(holder)
    return holder


def _check(h: HolderConfig) -> None:
    if not isinstance(h.name, str) or not _NAME.match(h.name):
        raise ConfigError(f"holder name {h.name!r} is invalid: use letters, digits, '_', '.', '-' (max 64)")
    if not isinstance(h.base_url, str) or not re.match(r"^https?://[^/\s]+", h.base_url):
        raise ConfigError(
            f"holder {h.name}: base_url must be an http(s) URL (the AdminBaseUri), got {h.base_url!r}"
        )
    try:
        ZoneInfo(h.timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            f"holder {h.name}: unknown timezone {h.timezone!r}; use an IANA name such as Australia/Sydney"
        ) from None
    _check_limits(h)
    if h.signing_alg not in settings.SIGNING_ALGORITHMS:
        raise ConfigError(
            f"holder {h.name}: signing_alg must be one of {', '.join(settings.SIGNING_ALGORITHMS)}"
        )
    if h.token_endpoint:
        if not h.client_id or not (h.private_key or h.private_key_path):
            raise ConfigError(
                f"holder {h.name}: token_endpoint needs client_id and private_key_path (or private_key)"
            )
        if h.token or h.token_env:
            raise ConfigError(f"holder {h.name}: give either a token or a token_endpoint, not both")
    if bool(h.cert) != bool(h.key) and not (h.cert and _pem_has_key(h.cert)):
        raise ConfigError(
            f"holder {h.name}: mTLS needs both cert and key (or a cert file that contains the key)"
        )
    for label, path in (
        ("cert", h.cert),
        ("key", h.key),
        ("ca", h.ca),
        ("private_key_path", h.private_key_path),
    ):
        if path and not Path(path).expanduser().is_file():
            raise ConfigError(f"holder {h.name}: {label} file not found: {path}")


def _check_limits(h: HolderConfig) -> None:
    for key, value in (("timeout", h.timeout), ("retry_budget", h.retry_budget)):
        if not _positive_number(value):
            raise ConfigError(f"holder {h.name}: {key} must be a positive number of seconds, got {value!r}")
    if not isinstance(h.max_attempts, int) or isinstance(h.max_attempts, bool) or h.max_attempts < 1:
        raise ConfigError(
            f"holder {h.name}: max_attempts must be a whole number >= 1, got {h.max_attempts!r}"
        )


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < float("inf")


def check_concurrency(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 64:
        raise ConfigError(f"concurrency must be a whole number from 1 to 64, got {value!r}")
    return value


def _pem_has_key(path: str) -> bool:
    try:
        return "PRIVATE KEY" in Path(path).expanduser().read_text()
    except OSError:
        return False


def holders_from_list(raw: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[HolderConfig]:
    if isinstance(raw, Mapping):  # a single holder given as a table
        raw = [raw]
    holders = [holder_from_mapping(item) for item in raw]
    if not holders:
        raise ConfigError(
            "no holders configured: add [[sources.cdr_metrics.holders]] or pass --holder/--base-url"
        )
    names = [h.name for h in holders]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"holder names must be unique; repeated: {', '.join(dupes)}")
    return holders


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON holders file; returns the `sources.cdr_metrics` level (holders, x_v, ...)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {p}: {err.strerror}") from None
    try:
        doc: Any = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(
            f"config file {p} is not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: {err}"
        ) from None
    if isinstance(doc, list):
        doc = {"holders": doc}
    section = doc.get("sources", {}).get(settings.SOURCE_NAME, doc) if isinstance(doc, dict) else {}
    if not isinstance(section, dict) or "holders" not in section:
        raise ConfigError(
            f"config file {p} has no holders: add [[holders]] (or [[sources.cdr_metrics.holders]]) entries"
        )
    return section


def check_versions(x_v: int, x_min_v: int | None) -> None:
    if not isinstance(x_v, int) or isinstance(x_v, bool) or x_v < 1:
        raise ConfigError(f"x-v must be a positive integer, got {x_v!r}")
    if x_min_v is not None and (not isinstance(x_min_v, int) or isinstance(x_min_v, bool) or x_min_v < 1):
        raise ConfigError(f"x-min-v must be a positive integer, got {x_min_v!r}")


def check_period(period: str) -> str:
    value = str(period).upper()
    if value not in settings.PERIODS:
        raise ConfigError(f"period must be one of {', '.join(settings.PERIODS)}, got {period!r}")
    return value
