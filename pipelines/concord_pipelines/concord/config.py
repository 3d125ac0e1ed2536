"""Every setting of the Concord export in one place: its type, its default and what it means.

dlt resolves them in section `sources.concord` (flags win, then env vars, then `.dlt/secrets.toml`, then
`.dlt/config.toml`, then the defaults here). `concord_source()` takes the source's settings as arguments
that dlt injects from the same section; the CLI and the Airflow DAG only pass overrides. README's settings
table is generated from `SETTINGS` (python -m concord_pipelines.concord.tabledoc --write).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args, get_origin

import dlt
from dlt.common.configuration import configspec
from dlt.common.configuration.exceptions import ConfigValueCannotBeCoercedException
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue, is_optional_type

from concord_pipelines.concord import settings
from concord_pipelines.errors import ConfigError

SECTIONS = ("sources", "concord")


@configspec
class ConcordSettings(BaseConfiguration):
    api_key: TSecretStrValue | None = None
    organization_id: str | None = None
    base_url: str = settings.DEFAULT_BASE_URL
    project_ids: list[str] | None = None
    start_date: str | None = None
    lookback_seconds: int = settings.DEFAULT_LOOKBACK_SECONDS
    lag_seconds: int = settings.DEFAULT_LAG_SECONDS
    concurrency: int = settings.DEFAULT_CONCURRENCY
    slice_rows: int = settings.SLICE_ROWS
    max_offset: int = settings.MAX_OFFSET
    pii: str = "keep"
    pii_salt: TSecretStrValue | None = None
    timeout: float = 30.0
    max_retries: int = 6
    backoff_base: float = 0.5
    metrics_per_project: bool = False
    metrics_lookback_days: int = settings.DEFAULT_METRICS_LOOKBACK_DAYS
    metrics_initial_days: int = settings.DEFAULT_METRICS_INITIAL_DAYS
    resources: list[str] | None = None
    destination: str = "duckdb"
    duckdb_path: str | None = None
    table_format: str | None = None
    dataset: str = settings.DEFAULT_DATASET
    pipeline_name: str = settings.DEFAULT_PIPELINE_NAME
    pipelines_dir: str | None = None
    dbt: bool = True
    fail_on_dbt_test: bool = False


# (setting(s), default as documented, meaning): the README's table, in this order.
SETTINGS: list[tuple[str, str, str]] = [
    ("`api_key` (secrets.toml)", "required", "the organization's API key; never a flag, never printed"),
    ("`organization_id`", "required", "the organization's UUID (flag `--org`)"),
    ("`base_url`", f"`{settings.DEFAULT_BASE_URL}`", "the API's base URL; the key is only ever sent to its origin"),
    ("`project_ids`", "all projects", "only these projects (flag `--project`, repeatable)"),
    ("`start_date`", f"`{settings.DEFAULT_START_DATE[:10]}`", "where a first run begins"),
    ("`lookback_seconds`", f"{settings.DEFAULT_LOOKBACK_SECONDS}", "re-read this much before the cursor (late writes)"),
    ("`lag_seconds`", f"{settings.DEFAULT_LAG_SECONDS}", "leave out rows younger than this (still being written)"),
    ("`concurrency`", f"{settings.DEFAULT_CONCURRENCY}", "requests in flight at once"),
    ("`slice_rows`", f"{settings.SLICE_ROWS:,}",
     "a window with more rows is read in slices; the CLI loads and checkpoints each slice on its own (0: one piece)"),
    ("`max_offset`", f"{settings.MAX_OFFSET:,}", "no request reaches past this offset; bigger windows are cut in time (0: no limit)"),
    ("`pii` / `pii_salt` (secrets.toml)", "`keep`", "`keep`, `hash` (salted) or `drop` the personal columns"),
    ("`timeout`, `max_retries`, `backoff_base`", "30 s, 6, 0.5 s", "per request; plain numbers of seconds (`30`, not `30s`)"),
    ("`metrics_per_project`, `metrics_lookback_days`, `metrics_initial_days`",
     f"`false`, {settings.DEFAULT_METRICS_LOOKBACK_DAYS}, {settings.DEFAULT_METRICS_INITIAL_DAYS}",
     "usage metrics per project too; days re-read before the last complete one; days a first run reaches back"),
    ("`resources`", "all", "which resources to export (flag `--resources`)"),
    ("`destination`, `dataset`, `pipeline_name`", f"`duckdb`, `{settings.DEFAULT_DATASET}`, `{settings.DEFAULT_PIPELINE_NAME}`",
     "any dlt destination; its credentials use dlt's own settings"),
    ("`duckdb_path`", f"`{settings.DEFAULT_DUCKDB_PATH}`", "the DuckDB file (flag `--duckdb-path`)"),
    ("`table_format`", f"`{settings.DEFAULT_TABLE_FORMAT}` on filesystem",
     "`delta` or `iceberg` (flag `--table-format`): file tables that merge; destinations that cannot merge are refused"),
    ("`pipelines_dir`", "dlt's", "the state and the run lock: `$DLT_DATA_DIR/pipelines`, else `~/.dlt/pipelines`, as root `/var/dlt/pipelines`"),
    ("`dbt` (flag `--no-dbt`)", "`true`", "`dbt build` after each load ([SQL and dbt](#sql-and-dbt))"),
    ("`fail_on_dbt_test` (flag `--fail-on-dbt-test`)", "`false`", "a failing dbt test is reported; `true`: exit 5"),
]


def resolve_settings(overrides: Mapping[str, Any]) -> ConcordSettings:
    """Every setting: `overrides` (flags, the DAG's values) where not None, else dlt's config under exactly
    `sources.concord.<name>` (typed by dlt), else the default above.

    Exact keys, not dlt's walk up the sections: a bare `destination` or `timeout` elsewhere in the
    environment or in dlt's own config must not become this export's. A value dlt cannot read as its
    type (`concurrency = "four"`) is one ConfigError line naming the setting; secrets are strings, so
    their values never reach a message.
    """
    resolved = ConcordSettings()
    for name, hint in resolved.get_resolvable_fields().items():
        value = overrides.get(name)
        if value is None:
            value = _configured(name, hint)
        if value is not None:
            setattr(resolved, name, value)
    return resolved


def _configured(name: str, hint: Any) -> Any:
    key = ".".join((*SECTIONS, name))
    if name in SECRETS:  # no type: dlt then keeps the value out of its trace, as a secret
        return dlt.secrets.get(key)
    wanted = next(a for a in get_args(hint) if a is not type(None)) if is_optional_type(hint) else hint
    wanted = get_origin(wanted) or wanted  # list[str] -> list: dlt parses the JSON/TOML list
    try:
        return dlt.config.get(key, wanted)
    except ConfigValueCannotBeCoercedException as err:
        raise ConfigError(f"SOURCES__CONCORD__{name.upper()} ({name} in .dlt/config.toml) must be "
                          f"{KINDS.get(wanted, 'text')}, not {err.field_value!r}") from None


KINDS = {bool: "true or false", int: "a whole number", float: "a number of seconds (without unit)",
         list: 'a list such as ["a", "b"]'}
SECRETS = frozenset({"api_key", "pii_salt"})  # read from secrets.toml and env only, like dlt's secret values


def settings_table() -> str:
    """README's table of settings (generated, and checked by tests/concord/test_docs.py)."""
    lines = ["| setting (`[sources.concord]`) | default | what it does |", "|---|---|---|"]
    lines += [f"| {name} | {default} | {meaning} |" for name, default, meaning in SETTINGS]
    return "\n".join(lines)
