"""Checks that turn every bad setting into one `ConfigError` line before the run touches any file.

A run that fails here has created no DuckDB file, no lock and no state: validation comes first,
so "a failed run changes nothing" holds for configuration mistakes too.
"""

from __future__ import annotations

import math
import re
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

from concord_pipelines.errors import ConfigError

# Ten years: far beyond any useful re-read, far below what datetime arithmetic overflows on.
MAX_WINDOW_SECONDS = 10 * 366 * 24 * 3600
EARLIEST_START_YEAR = 1970  # the API's dates are epoch based; year 1 reached it as "1-01-01" (422)
PIPELINE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
# dlt fills these itself when a pipeline runs; anything else missing is the user's to set.
RUNTIME_DESTINATION_FIELDS = frozenset({"dataset_name", "local_dir", "pipeline_name", "default_schema_name", "destination_name"})


def _where(key: str, flag: str | None) -> str:
    env = f"SOURCES__CONCORD__{key.upper()}"
    return f"{flag} / {env}" if flag else env


def whole_number(value: Any, key: str, flag: str | None, minimum: int, maximum: int | None = None) -> int:
    """An integer setting from a flag, env var or TOML (strings like "four" included) within bounds."""
    bounds = f"from {minimum:,} to {maximum:,}" if maximum is not None else f"of at least {minimum:,}"
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(f"{_where(key, flag)} must be a whole number {bounds}, not {value!r}") from None
    if isinstance(number, bool) or number < minimum or (maximum is not None and number > maximum):
        raise ConfigError(f"{_where(key, flag)} must be a whole number {bounds}, not {value!r}")
    return number


def seconds(value: Any, key: str, flag: str | None, minimum: float, positive: bool = False) -> float:
    """A number of seconds ("30", 30, 0.5); "30s" and negatives are refused with the setting's name."""
    kind = "a number of seconds greater than 0" if positive else f"a number of seconds of at least {minimum:g}"
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{_where(key, flag)} must be {kind} (without unit), not {value!r}") from None
    if not math.isfinite(number) or number < minimum or (positive and number <= 0):
        raise ConfigError(f"{_where(key, flag)} must be {kind}, not {value!r}")
    return number


def check_start_year(parsed: datetime) -> None:
    if parsed.year < EARLIEST_START_YEAR:
        raise ConfigError(
            f"start date {parsed.date().isoformat()} is before {EARLIEST_START_YEAR}: "
            "give a date from 1970 on"
        )


def check_pipeline_name(name: str) -> str:
    """The name becomes a folder and a lock file under the pipelines dir: no path separators, no dot files."""
    if not PIPELINE_NAME_RE.match(str(name)):
        raise ConfigError(
            f"pipeline name {name!r} is not a plain name: use letters, digits, '_', '-' and '.' (not first), "
            "at most 100 characters; fix --pipeline-name / SOURCES__CONCORD__PIPELINE_NAME"
        )
    return str(name)


def check_pipelines_dir(path: str) -> Path:
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(
            f"--pipelines-dir {folder} is a file, not a folder: give a folder for the pipeline state "
            "(or SOURCES__CONCORD__PIPELINES_DIR)"
        )
    return folder


def check_lock_path(path: Path) -> None:
    if path.exists() and not path.is_file():
        raise ConfigError(f"the lock path {path} is not a file: remove it (no run holds a folder as its lock) and run again")


def check_pii_salt(pii: str, salt: str | None) -> None:
    if pii == "hash" and salt is not None and not salt.strip():
        raise ConfigError(
            'pii = "hash" needs a real salt, not only whitespace: set SOURCES__CONCORD__PII_SALT '
            "or pii_salt in .dlt/secrets.toml to a long random value"
        )


def check_duckdb_file(path: Path) -> None:
    """DuckDB on a FIFO or device blocks forever opening it; refuse anything that is not a regular file."""
    if path.exists() and not path.is_dir() and not stat.S_ISREG(path.stat().st_mode):
        raise ConfigError(f"--duckdb-path {path} is not a regular file (a pipe or device): choose a file path")


def missing_destination_settings(err: Exception, destination_type: str) -> ConfigError | None:
    """dlt's ConfigFieldMissingException as the env var a user sets, e.g. DESTINATION__FILESYSTEM__BUCKET_URL."""
    fields = [f for f in getattr(err, "fields", []) if f not in RUNTIME_DESTINATION_FIELDS]
    if not fields:
        return None
    name = destination_type.rsplit(".", 1)[-1]
    env = ", ".join(f"DESTINATION__{name.upper()}__{f.upper()}" for f in fields)
    keys = ", ".join(fields)
    return ConfigError(f"destination {name!r} is missing {keys}: set {env} (or [destination.{name}] {keys} in .dlt/)")
