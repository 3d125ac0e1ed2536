"""dlt source `cdr_metrics`: Get Metrics from one or more CDR data holders into two tables.

* `metric_observations` - one row per observation, merged on
  (data_holder, metric, dimension, grain, period_date, hour_key); `hour` stays NULL for daily and
  monthly rows while the non-null `hour_key` (-1 for them) stands in for it in the key.
* `snapshots` - one row per holder and request, merged on (data_holder, request_time).

A holder whose call fails or whose payload breaks its version's schema contributes no rows;
the others still load. Failures are recorded in the `outcomes` object the caller passes in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import dlt
from dlt.sources import DltResource

from pipelines.cdr_metrics import parse, settings
from pipelines.cdr_metrics.client import HolderClient
from pipelines.cdr_metrics.config import HolderConfig, check_period, check_versions, holders_from_list
from pipelines.cdr_metrics.validation import PayloadError, validate_payload
from pipelines.errors import ConfigError, PipelineError

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


@dataclass
class RunOutcomes:
    """Filled while the source extracts: what each holder served or why it failed."""

    holders: dict[str, HolderOutcome] = field(default_factory=dict)

    @property
    def failed(self) -> list[HolderOutcome]:
        return [o for o in self.holders.values() if o.error]


def fetch_holder(holder: HolderConfig, x_v: int, x_min_v: int | None, period: str) -> dict[str, Any]:
    """Call, validate and flatten one holder; raises PipelineError or PayloadError, loads nothing itself."""
    with HolderClient(holder) as client:
        response = client.get_metrics(x_v, x_min_v, period)
    try:
        validate_payload(response.payload, response.version)
        rows = list(parse.observations(response.payload, response.version, holder.name, holder.timezone))
        snap = parse.snapshot(response.payload, response.version, holder.name, holder.timezone)
    except PayloadError as err:
        raise PipelineError(
            f"holder {holder.name}: v{response.version} payload breaks its schema at {err.path}: {err.problem}"
        ) from None
    snap.update(requested_x_v=x_v, requested_x_min_v=x_min_v, period=period)
    return {"holder": holder.name, "version": response.version, "observations": rows, "snapshot": snap}


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


@dlt.source(name=settings.SOURCE_NAME)
def cdr_metrics(
    holders: list[dict[str, Any]] = dlt.config.value,
    credentials: dict[str, dict[str, str]] | None = dlt.secrets.value,
    x_v: int = settings.DEFAULT_X_V,
    x_min_v: int | None = settings.DEFAULT_X_MIN_V,
    period: str = settings.DEFAULT_PERIOD,
    outcomes: RunOutcomes | None = None,
) -> Sequence[DltResource]:
    """Get Metrics from every configured holder (`[[sources.cdr_metrics.holders]]`).

    `credentials` (secrets.toml `[sources.cdr_metrics.credentials.<holder name>]`, keys `token` and/or
    `private_key`) keeps secrets out of `holders`: dlt records resolved config values in its trace,
    secrets it does not.
    """
    raw = [asdict(h) if isinstance(h, HolderConfig) else dict(h) for h in holders]
    configs = holders_from_list(with_credentials(raw, credentials or {}))
    check_versions(x_v, x_min_v)
    period = check_period(period)
    report = outcomes if outcomes is not None else RunOutcomes()
    # Callers that collect outcomes report failures themselves; otherwise make them visible here.
    level = logging.INFO if outcomes is not None else logging.WARNING

    @dlt.resource(name="holder_payloads", selected=False)
    def holder_payloads() -> Iterator[dict[str, Any]]:
        for holder in configs:
            outcome = report.holders.setdefault(holder.name, HolderOutcome(holder.name))
            started = time.monotonic()
            try:
                item = fetch_holder(holder, x_v, x_min_v, period)
            except PipelineError as err:
                outcome.error = str(err)
                log.log(level, "%s", err)
                continue
            except Exception as err:  # isolate the holder; the run still ends non-zero
                outcome.error = f"holder {holder.name}: unexpected {type(err).__name__}: {' '.join(str(err).split())[:200]}"
                log.log(level, "%s", outcome.error)
                log.debug("holder %s failed", holder.name, exc_info=True)
                continue
            finally:
                outcome.seconds = time.monotonic() - started
            outcome.version = item["version"]
            outcome.observations = len(item["observations"])
            outcome.snapshots = 1
            yield item

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
