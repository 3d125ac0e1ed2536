"""Let a DuckDB file share its name with the dataset (`concord.duckdb` holding schema `concord`).

DuckDB names the catalog after the file, so dlt's two-part `"concord"."table"` is ambiguous
between catalog and schema and every load fails with a Binder Error. dlt already supports a
catalog component in qualified names (`SqlClientBase.catalog_name`); its DuckDB client just
returns None. We return the current catalog when, and only when, it collides with the dataset,
which makes every name dlt generates three-part and unambiguous. Other destinations are untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlt.destinations.impl.duckdb.sql_client import DuckDbSqlClient

_PATCHED = False


def enable_catalog_qualified_names() -> None:
    global _PATCHED
    if _PATCHED:
        return
    original = DuckDbSqlClient.catalog_name

    def catalog_name(self: Any, quote: bool = True, casefold: bool = True) -> str | None:
        catalog = _current_catalog(self)
        if catalog is None or catalog != self.dataset_name:
            return original(self, quote=quote, casefold=casefold)
        if casefold:
            catalog = self.capabilities.casefold_identifier(catalog)
        return self.capabilities.escape_identifier(catalog) if quote else catalog

    DuckDbSqlClient.catalog_name = catalog_name  # type: ignore[method-assign]
    _PATCHED = True


def _current_catalog(client: Any) -> str | None:
    """DuckDB names a file's catalog after the file's stem; ':memory:' is catalog 'memory'."""
    database = getattr(getattr(client, "credentials", None), "database", None)
    if not isinstance(database, str) or not database:
        return None
    if database == ":memory:":
        return "memory"
    return Path(database).stem


def qualified_dataset(duckdb_path: str, dataset: str) -> str:
    """How to name the dataset in SQL against this file: `catalog.schema` when the names collide."""
    catalog = Path(duckdb_path).stem
    return f'"{catalog}"."{dataset}"' if catalog == dataset else f'"{dataset}"'
