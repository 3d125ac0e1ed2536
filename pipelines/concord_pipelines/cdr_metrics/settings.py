"""Defaults for the CDR Get Metrics source (all overridable from config or the CLI)."""

from __future__ import annotations

SOURCE_NAME = "cdr_metrics"
DATASET_NAME = "cdr_metrics"
PIPELINE_NAME = "cdr_metrics"
# DuckDB names its catalog after the file: a file named like the dataset (cdr_metrics.duckdb) would make
# `cdr_metrics.<table>` ambiguous, so the runner refuses it; cdr.duckdb keeps SQL plain.
DEFAULT_DUCKDB_PATH = "cdr.duckdb"

METRICS_PATH = "/cds-au/v1/admin/metrics"
SCOPE = "admin:metrics.basic:read"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Versions this connector can parse; the holder picks the highest it supports in [x-min-v, x-v].
SUPPORTED_VERSIONS = (2, 3, 4, 5)
DEFAULT_X_V = 5
DEFAULT_X_MIN_V = 2
PERIODS = ("CURRENT", "HISTORIC", "ALL")
DEFAULT_PERIOD = "ALL"
DEFAULT_TIMEZONE = "Australia/Sydney"

SIGNING_ALGORITHMS = ("PS256", "RS256", "ES256")
DEFAULT_SIGNING_ALGORITHM = "PS256"
CLIENT_ASSERTION_LIFETIME_S = 60

# Per holder (keys `timeout`, `max_attempts`, `retry_budget`): seconds per HTTP attempt, attempts per
# request (429, 5xx, timeouts and connection errors are retried), and seconds one holder may take in all.
TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3
RETRY_BUDGET_S = 120.0
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
PERMANENT_5XX = frozenset({501, 505})  # "not implemented" / "HTTP version": retrying cannot help
# Holders fetched at once (run-wide `concurrency`): each holder waits only for itself.
CONCURRENCY = 4

OBSERVATIONS_TABLE = "metric_observations"
SNAPSHOTS_TABLE = "snapshots"
# `hour` is NULL for daily and monthly rows; merge keys must not be NULL, so the key uses `hour_key`
# (= hour for hourly rows, NO_HOUR for the others).
NO_HOUR = -1
