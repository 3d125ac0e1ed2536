"""Endpoints, table contracts and defaults of the Concord export.

Column types are declared here (not inferred) so that an empty or all-null first page can never
leave a column untyped, and so every destination gets the same schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_BASE_URL = "https://api.concord.tech/privacy-v1"
# DuckDB names a file's catalog after its stem, so the default file and dataset must differ: `concord.duckdb`
# holding schema `concord` made `concord.<table>` ambiguous, and dlt's loads, `pipeline.dataset()` and plain SQL
# all failed on it. The file keeps dlt's own default (`<pipeline name>.duckdb`, what `dlt.attach("concord")`
# opens), the dataset gets a suffix, like dlt's `<pipeline name>_dataset` but shorter.
DEFAULT_DATASET = "concord_data"
DEFAULT_PIPELINE_NAME = "concord"
DEFAULT_DUCKDB_PATH = "concord.duckdb"
# --destination filesystem writes this table format: plain parquet/jsonl files cannot merge, so reruns would
# append duplicates. delta needs the `deltalake` package (the `filesystem` extra), iceberg `pyiceberg`.
TABLE_FORMATS = ("delta", "iceberg")
DEFAULT_TABLE_FORMAT = "delta"
DEFAULT_START_DATE = "2015-01-01T00:00:00Z"

PAGE_LIMIT = 1000  # the API's documented maximum
DEFAULT_CONCURRENCY = 4
DEFAULT_LAG_SECONDS = 5 * 60  # data younger than this may still be in flight: read it next run
DEFAULT_LOOKBACK_SECONDS = 2 * 3600  # re-read this much before the cursor to catch late writes
DEFAULT_METRICS_LOOKBACK_DAYS = 1  # re-read yesterday's dashboard too: it may have been partial
DEFAULT_METRICS_INITIAL_DAYS = 90  # one request per day: a first run does not walk back to 2015
MAX_WINDOW_ROWS = 100_000  # a window larger than this is split so id tracking stays bounded
SWEEP_MAX_ROWS = 100_000  # incremental windows up to this size also get a dateUpdated sweep for updates the filter missed
MAX_OFFSET = 10_000  # offsets stay below this: many backends refuse deeper pages (Elasticsearch's max_result_window)
ARROW_BATCH_ROWS = 10_000  # pages are joined into arrow tables of this many rows before dlt sees them
SLICE_ROWS = 1_000_000  # a first load or backfill bigger than this is loaded in slices of 500,000 to 1,000,000 rows
RELEASE_MEMORY_AFTER_ROWS = 100_000  # a resource that read this many rows hands freed memory back before the load

# dlt settings the export runs with wherever it is started (registered as dlt's lowest-precedence config
# provider, so .dlt/config.toml and env vars still override them). Measured with benchmarks/throughput.py.
DLT_DEFAULTS: dict = {
    "destination": {
        "duckdb": {
            "credentials": {
                # DuckDB would otherwise take up to 80% of RAM while merging: 1,000,000 events peaked at
                # 1.25 GB RSS. Loads are sliced to at most SLICE_ROWS rows, whose merge fits in 96 MB
                # (measured to 3,000,000 events in three slices; 64 MB ran out of memory, and one
                # unsliced merge of 3,000,000 rows ran out of 128 MB). No order is needed inside a
                # load. The runner holds one connection per slice; a high checkpoint threshold lets the
                # staging rows, truncated after the merge, leave the file without being checkpointed.
                "global_config": {"memory_limit": "96MB", "preserve_insertion_order": False, "checkpoint_threshold": "1GB"},
            }
        }
    },
    "load": {"truncate_staging_dataset": True},
}

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# Direct identifiers covered by the `pii` setting (flattened column names).
PII_COLUMNS = frozenset(
    {
        "session__ip_address",
        "session__user_agent",
        "user__email",
        "user__first_name",
        "user__last_name",
        "user__phone_number",
    }
)

# Column kinds used in the table specs below.
TEXT, BIGINT, DOUBLE, BOOL, TIMESTAMP, JSON, DATE = "text", "bigint", "double", "bool", "timestamp", "json", "date"

SESSION_COLUMNS = {
    "session__id": TEXT,
    "session__ip_address": TEXT,
    "session__domain": TEXT,
    "session__geography": TEXT,
    "session__user_agent": TEXT,
}


@dataclass(frozen=True)
class TableSpec:
    """A destination table: its key, declared columns and the column that says which row is newer."""

    name: str
    primary_key: tuple[str, ...]
    columns: dict[str, str]
    dedup_sort: str | None = None
    endpoint: str = ""
    windowed: bool = False  # the endpoint accepts startDate/endDate and sort=dateUpdated
    extra: dict[str, str] = field(default_factory=dict)
    grain: str = "one row per item"  # what one row is (README and dbt docs)
    note: str = ""  # anything else a reader of the table must know


PROJECTS = TableSpec(
    name="projects",
    grain='one row per project',
    primary_key=("id",),
    endpoint="/organizations/{org}/projects",
    dedup_sort="date_updated",
    columns={
        "id": TEXT,
        "name": TEXT,
        "slug": TEXT,
        "status": TEXT,
        "type": TEXT,
        "organization_id": TEXT,
        "contact_emails": JSON,
        "status_flags__is_active": BOOL,
        "status_flags__is_test": BOOL,
        "date_created": TIMESTAMP,
        "date_updated": TIMESTAMP,
    },
)

CONSENT_EVENTS = TableSpec(
    name="consent_events",
    grain='one row per consent event (latest version)',
    primary_key=("id",),
    endpoint="/organizations/{org}/consent-events",
    dedup_sort="version",
    windowed=True,
    columns={
        "id": TEXT,
        "concord_id": TEXT,
        "consent_action": TEXT,
        "consent_date": TIMESTAMP,
        "consent_state": TEXT,
        "date_created": TIMESTAMP,
        "date_updated": TIMESTAMP,
        "consent_type": TEXT,
        "expiration_date": TIMESTAMP,
        "organization": TEXT,
        "project": TEXT,
        **SESSION_COLUMNS,
        "submitter": TEXT,
        "category": TEXT,
        "subcategory": JSON,
        "label": TEXT,
        "version": BIGINT,
        "created_at": JSON,
        "updated_at": JSON,
    },
)

CONSENT_TYPES = TableSpec(
    name="consent_types",
    grain='one row per consent type',
    primary_key=("id",),
    endpoint="/organizations/{org}/projects/{project}/consent-types",
    dedup_sort="date_updated",
    columns={
        "id": TEXT,
        "organization": TEXT,
        "project": TEXT,
        "category": TEXT,
        "subcategory": JSON,
        "label": TEXT,
        "version": BIGINT,
        "name": TEXT,
        "description": TEXT,
        "url": TEXT,
        "valid_states": JSON,
        "status": TEXT,
        "consent_duration": BIGINT,
        "required": BOOL,
        "date_created": TIMESTAMP,
        "date_updated": TIMESTAMP,
    },
)

COMPLIANCE_REQUESTS = TableSpec(
    name="compliance_requests",
    grain='one row per compliance request (latest status)',
    primary_key=("id",),
    endpoint="/organizations/{org}/compliance-requests",
    dedup_sort="date_updated",
    windowed=True,
    columns={
        "id": TEXT,
        "concord_id": TEXT,
        "organization": TEXT,
        "project": TEXT,
        "request": TEXT,
        "request_details": TEXT,
        "status": TEXT,
        "resolution_status": TEXT,
        "resolution": TEXT,
        "notes": TEXT,
        "domain": TEXT,
        **SESSION_COLUMNS,
        "user__email": TEXT,
        "user__first_name": TEXT,
        "user__last_name": TEXT,
        "user__phone_number": TEXT,
        "verification_method": TEXT,
        "data_system_tasks": JSON,
        "files": JSON,
        "request_date": TIMESTAMP,
        "date_created": TIMESTAMP,
        "date_updated": TIMESTAMP,
        "acknowledged_date": TIMESTAMP,
        "verified_date": TIMESTAMP,
        "resolved_date": TIMESTAMP,
    },
)

COMPLIANCE_REQUEST_EVENTS = TableSpec(
    name="compliance_request_events",
    grain='one row per status change of a request',
    note='The API gives these events no id; the key is the request, the event and its time.',
    # The API gives these events no id: a request's event of one kind at one instant is one row.
    primary_key=("compliance_request_id", "event", "date_created"),
    endpoint="/organizations/{org}/compliance-requests-events",
    dedup_sort="date_updated",
    windowed=True,
    columns={
        "compliance_request_id": TEXT,
        "event": TEXT,
        "date_created": TIMESTAMP,
        "date_updated": TIMESTAMP,
        "account_id": TEXT,
        "project_id": TEXT,
        "organization_id": TEXT,
    },
)

TRACKER_SCAN_CONFIGS = TableSpec(
    name="tracker_scan_configs",
    grain='one row per project (its scan schedule)',
    primary_key=("project_id",),
    endpoint="/organizations/{org}/projects/{project}/tracker-scan-history",
    columns={
        "project_id": TEXT,
        "organization_id": TEXT,
        "scheduled_scan_enabled": BOOL,
        "scan_period": TEXT,
        "scheduled_hour": BIGINT,
        "scheduled_day_of_week": BIGINT,
        "scheduled_day_of_month": BIGINT,
    },
)

SCAN_CATEGORIES = (
    "analytics",
    "do_not_sell",
    "functional",
    "global_privacy_control",
    "ignored",
    "limit_pii_use",
    "marketing",
    "strictly_necessary",
    "unclassified",
)

TRACKER_SCANS = TableSpec(
    name="tracker_scans",
    grain='one row per scan (`scanHistory` entry)',
    note='Unfinished scans (e.g. `running`) are read again on every run until they finish.',
    primary_key=("project_id", "scan_date"),
    endpoint=TRACKER_SCAN_CONFIGS.endpoint,
    columns={
        "project_id": TEXT,
        "organization_id": TEXT,
        "scan_date": TIMESTAMP,
        "status": TEXT,
        "scan_type": TEXT,
        "task_arn": TEXT,
        "domains_count": BIGINT,
        "results__total": BIGINT,
        "results__new": BIGINT,
        "results__project": BIGINT,
        "results__global": BIGINT,
        **{f"results__categories__{c}": BIGINT for c in SCAN_CATEGORIES},
    },
)

DATA_SYSTEMS = TableSpec(
    name="data_systems",
    grain='one row per data system',
    primary_key=("id",),
    endpoint="/organizations/{org}/data-systems",
    dedup_sort="date_updated",
    columns={
        "id": TEXT,
        "organization_id": TEXT,
        "name": TEXT,
        "type": TEXT,
        "status": TEXT,
        "retention": BIGINT,
        "project_ids": JSON,
        "date_created": TIMESTAMP,
        "date_updated": TIMESTAMP,
    },
)

REGIONS = TableSpec(
    name="regions",
    grain='one row per consent region of a project (banner settings flattened into `banner__*`)',
    primary_key=("id",),
    endpoint="/organizations/{org}/projects/{project}/regions",
    dedup_sort="date_updated",
    columns={
        "id": TEXT,
        "organization": TEXT,
        "project": TEXT,
        "name": TEXT,
        "consent_mode": TEXT,
        "countries": JSON,
        "status": TEXT,
        "banner__layout": TEXT,
        "banner__position": TEXT,
        "banner__theme": TEXT,
        "banner__language": TEXT,
        "banner__show_reject_all": BOOL,
        "banner__gpc_honored": BOOL,
        "banner__version": BIGINT,
        "date_created": TIMESTAMP,
        "date_updated": TIMESTAMP,
    },
)

METRICS_ENDPOINT = "/organizations/{org}/metrics"
# The organization is part of every usage key: two organizations exported into one dataset keep their own days.
_DAY_KEY = {"organization_id": TEXT, "date": DATE, "project_id": TEXT}

USAGE_DAILY = TableSpec(
    name="usage_daily",
    grain='one row per UTC day (and project, when `metrics_per_project`)',
    note="`project_id` is `''` for organization-wide numbers. The current (partial) day has `is_complete_day = false` and is refreshed by the next run.",
    primary_key=("organization_id", "date", "project_id"),
    endpoint=METRICS_ENDPOINT,
    columns={
        **_DAY_KEY,
        "sessions": BIGINT,
        "consent_events": BIGINT,
        "total_users": BIGINT,
        "full_consent": BIGINT,
        "partial_consent": BIGINT,
        "no_consent": BIGINT,
        "total_categories": BIGINT,
        "compliance_requests": BIGINT,
        "resolution_avg_days": DOUBLE,
        "resolution_median_days": DOUBLE,
        "resolution_min_days": DOUBLE,
        "resolution_max_days": DOUBLE,
        "is_complete_day": BOOL,
        "fetched_at": TIMESTAMP,
    },
)


def _breakdown(name: str, grain: str, *dims: str) -> TableSpec:
    return TableSpec(
        name=name,
        grain=grain,
        primary_key=("organization_id", "date", "project_id", *dims),
        endpoint=METRICS_ENDPOINT,
        columns={**_DAY_KEY, **dict.fromkeys(dims, TEXT), "count": BIGINT},
    )


USAGE_BREAKDOWNS = {
    "browser": _breakdown("usage_browser_daily", 'one row per day, project and browser', "browser"),
    "os": _breakdown("usage_os_daily", 'one row per day, project and OS', "os"),
    "geography": _breakdown("usage_geography_daily", 'one row per day, project, source (`consent_events`/`compliance_requests`) and country', "source", "country"),
    "category": _breakdown("usage_category_daily", 'one row per day, project, consent category and state (`total` when the API gives a bare count)', "category", "state"),
    "compliance_status": _breakdown("usage_compliance_status_daily", "one row per day, project, request type (`''` = all types) and status", "request_type", "status"),
    "compliance_type": _breakdown("usage_compliance_type_daily", 'one row per day, project and request type', "request_type"),
}

# Resource names accepted by --resources, with the tables each one fills.
RESOURCE_TABLES: dict[str, tuple[str, ...]] = {
    "projects": ("projects",),
    "consent_events": ("consent_events",),
    "consent_types": ("consent_types",),
    "compliance_requests": ("compliance_requests",),
    "compliance_request_events": ("compliance_request_events",),
    "tracker_scans": ("tracker_scan_configs", "tracker_scans"),
    "usage_metrics": ("usage_daily", *(spec.name for spec in USAGE_BREAKDOWNS.values())),
    "data_systems": ("data_systems",),
    "regions": ("regions",),
}
RESOURCE_ALIASES = {
    "tracker_scan_configs": "tracker_scans",
    "usage_daily": "usage_metrics",
    "metrics": "usage_metrics",
}
ALL_TABLE_SPECS: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        PROJECTS,
        CONSENT_EVENTS,
        CONSENT_TYPES,
        COMPLIANCE_REQUESTS,
        COMPLIANCE_REQUEST_EVENTS,
        TRACKER_SCAN_CONFIGS,
        TRACKER_SCANS,
        USAGE_DAILY,
        *USAGE_BREAKDOWNS.values(),
        DATA_SYSTEMS,
        REGIONS,
    )
}


def resolve_resource_names(names: list[str] | None, where: str) -> list[str]:
    """Resource names (aliases allowed) -> canonical names, in order, once each; all when empty.

    `where` names the setting in the error, e.g. "--resources / SOURCES__CONCORD__RESOURCES".
    Kept free of dlt imports: the Airflow DAG file calls it at parse time.
    """
    from concord_pipelines.errors import ConfigError

    if not names:
        return list(RESOURCE_TABLES)
    chosen: list[str] = []
    for raw in names:
        name = RESOURCE_ALIASES.get(raw.strip(), raw.strip())
        if name not in RESOURCE_TABLES:
            raise ConfigError(f"unknown resource {raw.strip()!r} in {where}: choose from {', '.join(RESOURCE_TABLES)}")
        if name not in chosen:
            chosen.append(name)
    return chosen
