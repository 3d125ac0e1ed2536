"""dlt source `cdr_metrics`: Get Metrics from one or more CDR data holders into two tables.

* `metric_observations` - one row per observation, merged on
  (data_holder, metric, dimension, grain, period_date, hour_key); `hour` stays NULL for daily and
  monthly rows while the non-null `hour_key` (-1 for them) stands in for it in the key.
* `snapshots` - one row per holder and request, merged on (data_holder, request_time).

Holders are fetched concurrently (`concurrency`, default 4). A holder whose call fails or whose
payload breaks its version's schema contributes no rows; the others still load. Failures are recorded in the resource's state (`run_outcomes`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

import dlt
from dlt.sources import DltResource

from concord_pipelines.cdr_metrics import parse, settings
from concord_pipelines.cdr_metrics.client import HolderClient
from concord_pipelines.cdr_metrics.config import (
    HolderConfig,
    check_concurrency,
    check_period,
    check_versions,
    holders_from_list,
)
from concord_pipelines.cdr_metrics.validation import PayloadError, validate_payload
from concord_pipelines.errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

CREDENTIAL_KEYS = frozenset({"token", "private_key"})
OBSERVATION_KEY = ("data_holder", "metric", "dimension", "grain", "period_date", "hour_key")
OBSERVATION_COLUMNS: dict[str, dict[str, Any]] = {
    "data_holder": {"data_type": "text", "nullable": False},
    "metric": {"data_type": "text", "nullable": False},
    "dimension": {"data_type": "text", "nullable": False},
    "grain": {"data_type": "text", "nullable": False},
    "period_date": {"data_type": "date", "nullable": False},
    "hour": {"data_type": "bigint", "nullable": True},
    "hour_key": {"data_type": "bigint", "nullable": False},
    "value": {"data_type": "double", "nullable": False},
    "is_partial": {"data_type": "bool", "nullable": False},
    "payload_version": {"data_type": "bigint", "nullable": False},
    "request_time": {"data_type": "timestamp", "nullable": False},
}
SNAPSHOT_KEY = ("data_holder", "request_time")
SNAPSHOT_COLUMNS: dict[str, dict[str, Any]] = {
    "data_holder": {"data_type": "text", "nullable": False},
    "request_time": {"data_type": "timestamp", "nullable": False},
    "local_date": {"data_type": "date"},
    "timezone": {"data_type": "text"},
    "payload_version": {"data_type": "bigint"},
    "customer_count": {"data_type": "bigint"},
    "recipient_count": {"data_type": "bigint"},
    "active_authorisations_individual": {"data_type": "bigint"},
    "active_authorisations_non_individual": {"data_type": "bigint"},
}


@dataclass
class HolderOutcome:
    holder: str
    version: int | None = None
    observations: int = 0
    snapshots: int = 0
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunOutcomes:
    """What each holder served or why it failed, in one run (kept in resource state, see `run_outcomes`)."""

    holders: dict[str, HolderOutcome] = field(default_factory=dict)

    @property
    def failed(self) -> list[HolderOutcome]:
        return [o for o in self.holders.values() if o.error]


def run_outcomes(pipeline: dlt.Pipeline) -> RunOutcomes:
    """The outcomes the last run of the source left in the pipeline's state."""
    resources = pipeline.state.get("sources", {}).get(settings.SOURCE_NAME, {}).get("resources", {})
    saved = resources.get("holder_payloads", {}).get("last_run", {})
    return RunOutcomes({name: HolderOutcome(**outcome) for name, outcome in saved.items()})


def fetch_holder(holder: HolderConfig, x_v: int, x_min_v: int | None, period: str) -> dict[str, Any]:
    """Call, validate and flatten one holder; raises PipelineError, loads nothing itself.

    `warnings` in the result: an offset-less requestTime (read in the holder's timezone) and fields left out.
    """
    with HolderClient(holder) as client:
        response = client.get_metrics(x_v, x_min_v, period)
    version, skipped = response.version, []
    payload = parse.without_extensions(response.payload, skipped)
    try:
        validate_payload(payload, version)
        at = parse.read_request_time(payload["data"]["requestTime"], holder.timezone)
        rows = list(parse.observations(payload, version, holder.name, holder.timezone, skipped))
        snap = parse.snapshot(payload, version, holder.name, holder.timezone)
    except PayloadError as err:
        raise PipelineError(
            f"holder {holder.name}: v{version} payload breaks its schema at {err.path}: {err.problem}"
        ) from None
    snap.update(requested_x_v=x_v, requested_x_min_v=x_min_v, period=period)
    return {
        "holder": holder.name,
        "version": version,
        "observations": rows,
        "snapshot": snap,
        "warnings": _warnings(holder, payload["data"]["requestTime"], at, skipped),
    }


def _warnings(holder: HolderConfig, raw_time: str, at: parse.RequestTime, skipped: list[str]) -> list[str]:
    """What loaded but deserves a look: a wall time read in the configured zone, fields left out."""
    out = []
    if not at.offset_given:
        out.append(
            f"holder {holder.name}: requestTime {raw_time!r} has no UTC offset; read as {holder.timezone} "
            f"local time (local date {at.local_date}); set the holder's timezone if that is wrong"
        )
    if skipped:
        out.append(f"holder {holder.name}: skipped fields the standard does not define: {', '.join(skipped)}")
    return out


@dataclass
class _Fetched:
    item: dict[str, Any] | None
    error: str | None
    seconds: float


def _fetch_isolated(holder: HolderConfig, x_v: int, x_min_v: int | None, period: str) -> _Fetched:
    """fetch_holder in a worker thread: every failure becomes that holder's one-line error."""
    started = time.monotonic()
    try:
        return _Fetched(fetch_holder(holder, x_v, x_min_v, period), None, time.monotonic() - started)
    except PipelineError as err:
        error = str(err)
    except Exception as err:  # isolate the holder; the run still ends non-zero
        error = f"holder {holder.name}: unexpected {type(err).__name__}: {' '.join(str(err).split())[:200]}"
        log.debug("holder %s failed", holder.name, exc_info=True)
    return _Fetched(None, error, time.monotonic() - started)


def with_credentials(holders: list[dict[str, Any]], credentials: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Merge `credentials[name]` (token, private_key) into each holder entry."""
    names = {h.get("name") for h in holders}
    for name, secret in credentials.items():
        if name not in names:
            raise ConfigError(
                f"credentials given for unknown holder {name!r}; holders are: {', '.join(map(str, names))}"
            )
        if not isinstance(secret, Mapping) or set(secret) - CREDENTIAL_KEYS:
            raise ConfigError(f"credentials.{name} may only hold {', '.join(sorted(CREDENTIAL_KEYS))}")
    return [{**h, **credentials.get(str(h.get("name")), {})} for h in holders]


def _record(outcome: HolderOutcome, fetched: _Fetched, level: int) -> dict[str, Any] | None:
    outcome.seconds = fetched.seconds
    if fetched.item is None:
        outcome.error = fetched.error
        log.log(level, "%s", fetched.error)
        return None
    outcome.version = fetched.item["version"]
    outcome.observations = len(fetched.item["observations"])
    outcome.snapshots = 1
    outcome.warnings = list(fetched.item["warnings"])
    for warning in outcome.warnings:
        log.log(level, "%s", warning)
    return fetched.item


@dlt.source(name=settings.SOURCE_NAME)
def cdr_metrics(
    holders: list[dict[str, Any]] = dlt.config.value,
    credentials: dict[str, dict[str, str]] | None = dlt.secrets.value,
    x_v: int = settings.DEFAULT_X_V,
    x_min_v: int | None = settings.DEFAULT_X_MIN_V,
    period: str = settings.DEFAULT_PERIOD,
    concurrency: int = settings.CONCURRENCY,
    log_failures: bool = True,
) -> Sequence[DltResource]:
    """Get Metrics from every configured holder (`[[sources.cdr_metrics.holders]]`).

    `credentials` (secrets.toml `[sources.cdr_metrics.credentials.<holder name>]`, keys `token` and/or
    `private_key`) keeps secrets out of `holders`: dlt records resolved config values in its trace,
    secrets it does not. `concurrency` holders are fetched at once, each bounded by its own `timeout`
    and `retry_budget`, so a hung holder holds up only itself. What each holder served, or why it failed,
    is kept in the state of resource `holder_payloads` (`last_run`, read back with `run_outcomes`);
    failures are logged as warnings unless `log_failures` is false (a caller that reports them itself).
    """
    raw = [asdict(h) if isinstance(h, HolderConfig) else dict(h) for h in holders]
    configs = holders_from_list(with_credentials(raw, credentials or {}))
    check_versions(x_v, x_min_v)
    period = check_period(period)
    workers = min(check_concurrency(concurrency), len(configs))
    level = logging.WARNING if log_failures else logging.INFO

    @dlt.resource(name="holder_payloads", selected=False)
    def holder_payloads() -> Iterator[dict[str, Any]]:
        # summary rows in configuration order, whatever order they finish in
        report = RunOutcomes({holder.name: HolderOutcome(holder.name) for holder in configs})
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cdr-holder") as pool:
            futures = {pool.submit(_fetch_isolated, h, x_v, x_min_v, period): h.name for h in configs}
            for future in as_completed(futures):
                item = _record(report.holders[futures[future]], future.result(), level)
                if item is not None:
                    yield item
        dlt.current.resource_state()["last_run"] = {name: asdict(o) for name, o in report.holders.items()}

    @dlt.transformer(
        data_from=holder_payloads,
        name=settings.OBSERVATIONS_TABLE,
        write_disposition="merge",
        primary_key=OBSERVATION_KEY,
        columns=OBSERVATION_COLUMNS,
    )
    def metric_observations(item: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        yield item["observations"]

    @dlt.transformer(
        data_from=holder_payloads,
        name=settings.SNAPSHOTS_TABLE,
        write_disposition="merge",
        primary_key=SNAPSHOT_KEY,
        columns=SNAPSHOT_COLUMNS,
    )
    def snapshots(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield item["snapshot"]

    return holder_payloads, metric_observations, snapshots
