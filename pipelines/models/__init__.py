"""Versioned SQL views over the Concord tables, created in the destination after each load.

    from pipelines.models import create_models
    create_models(pipeline)                                  # a dlt pipeline (any SQL destination)
    create_models(duckdb.connect("concord.duckdb"))          # a DuckDB connection
    create_models(psycopg2.connect(url), dialect="postgres") # any DB-API connection
    apply(destination="duckdb", duckdb_path="concord.duckdb") # open, create, close

Each view lives in `sql/<name>.sql` (optionally `sql/<name>.<dialect>.sql` to override one dialect)
with `{dataset}` standing for the quoted dataset (schema) name. The SQL is portable between DuckDB and
PostgreSQL as written. A view's meaning never changes under its name: a change that alters columns or
semantics is a new file with the next version (`v2_...`), and the old view stays until dropped.
See docs/warehouse.md for what each view means.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).parent / "sql"
DEFAULT_DATASET = "concord"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Model:
    name: str
    requires: tuple[str, ...]  # tables the view reads; it is skipped while one is missing

    def sql(self, dialect: str | None = None) -> str:
        if dialect:
            override = SQL_DIR / f"{self.name}.{dialect}.sql"
            if override.exists():
                return override.read_text()
        return (SQL_DIR / f"{self.name}.sql").read_text()


MODELS: tuple[Model, ...] = (
    Model("v1_daily_consent_rate", ("consent_events", "projects")),
    Model("v1_daily_decline_trend", ("consent_events",)),
    Model("v1_compliance_resolution_time", ("compliance_requests",)),
    Model("v1_tracker_category_trends", ("tracker_scans",)),
)
MODEL_NAMES = tuple(m.name for m in MODELS)
DUCKDB_DIALECTS = ("duckdb", "motherduck")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def view_sql(model: Model, dataset: str, dialect: str | None = None, catalog: str | None = None) -> str:
    """The CREATE OR REPLACE VIEW statement of `model` in `dataset`.

    DuckDB: the body's tables are left unqualified (DuckDB binds them to the view's own catalog and
    schema, so the view survives the file being renamed or attached under another name) and the view
    name is catalog-qualified (a file named like the dataset, concord.duckdb, makes "concord" ambiguous).
    Elsewhere tables are qualified with the dataset (PostgreSQL binds names at creation).
    """
    sql = model.sql(dialect).strip().rstrip(";")
    if dialect in DUCKDB_DIALECTS:
        body = sql.replace("{dataset}.", "")
        name = (f"{quote(catalog)}." if catalog else "") + f"{quote(dataset)}.{quote(model.name)}"
    else:
        body = sql.replace("{dataset}", quote(dataset))
        name = f"{quote(dataset)}.{quote(model.name)}"
    return f"CREATE OR REPLACE VIEW {name} AS\n{body}"


class _Executor:
    """Runs statements on a dlt pipeline, a DuckDB connection or a DB-API connection."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self._client_cm = None
        self._client = None

    def __enter__(self) -> _Executor:
        if hasattr(self.target, "sql_client") and hasattr(self.target, "pipeline_name"):
            self._client_cm = self.target.sql_client()
            self._client = self._client_cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client_cm is not None:
            self._client_cm.__exit__(*exc)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        if self._client is not None:
            return list(self._client.execute_sql(sql, *params) or [])
        if _is_duckdb(self.target):
            return self.target.execute(sql, list(params)).fetchall()
        with self.target.cursor() as cur:  # DB-API (psycopg2 uses %s placeholders)
            cur.execute(sql.replace("?", "%s"), params)
            return list(cur.fetchall()) if cur.description else []

    def execute(self, sql: str) -> None:
        if self._client is not None:
            self._client.execute_sql(sql)
        elif _is_duckdb(self.target):
            self.target.execute(sql)
        else:
            with self.target.cursor() as cur:
                cur.execute(sql)
            self.target.commit()


def _is_duckdb(target: Any) -> bool:
    return type(target).__module__.split(".")[0] in ("duckdb", "_duckdb")


def use_dataset(conn: Any, dataset: str = DEFAULT_DATASET) -> Any:
    """DuckDB: make `dataset` the default schema, so views are queried by bare name.

    Needed when the file is named like the dataset (concord.duckdb): `concord.x` is then ambiguous
    between the catalog and the schema, while `USE "concord"."concord"` is not.
    """
    catalog = conn.execute("SELECT current_database()").fetchone()[0]
    conn.execute(f"USE {quote(catalog)}.{quote(dataset)}")
    return conn


def detect_dialect(target: Any) -> str:
    if hasattr(target, "destination") and hasattr(target, "pipeline_name"):
        return str(target.destination.destination_name)
    if _is_duckdb(target):
        return "duckdb"
    module = type(target).__module__.split(".")[0]
    return {"psycopg2": "postgres", "psycopg": "postgres"}.get(module, module)


def existing_tables(executor: _Executor, dataset: str) -> set[str]:
    rows = executor.query("SELECT table_name FROM information_schema.tables WHERE table_schema = ?", (dataset,))
    return {str(r[0]) for r in rows}


def create_models(target: Any, dataset: str | None = None, dialect: str | None = None,
                  models: tuple[Model, ...] = MODELS) -> dict[str, list[str]]:
    """Create or replace every view; returns {"created": [...], "skipped": [...]}.

    target: a dlt Pipeline, a duckdb connection or a DB-API connection (e.g. psycopg2).
    dataset: the schema holding the Concord tables (default: the pipeline's dataset, else "concord").
    A view whose source tables do not exist yet (resource not exported) is skipped, not an error.
    """
    if dataset is None:
        dataset = getattr(target, "dataset_name", None) or DEFAULT_DATASET
    dialect = dialect or detect_dialect(target)
    created, skipped = [], []
    with _Executor(target) as ex:
        tables = existing_tables(ex, dataset)
        catalog = str(ex.query("SELECT current_database()")[0][0]) if dialect in DUCKDB_DIALECTS else None
        for model in models:
            missing = [t for t in model.requires if t not in tables]
            if missing:
                log.warning("view %s.%s skipped: table(s) %s not loaded yet", dataset, model.name, ", ".join(missing))
                skipped.append(model.name)
                continue
            ex.execute(view_sql(model, dataset, dialect, catalog))
            created.append(model.name)
    return {"created": created, "skipped": skipped}


def apply(destination: str = "duckdb", duckdb_path: str | None = None, dataset: str = DEFAULT_DATASET,
          credentials: str | None = None, pipelines_dir: str | None = None) -> dict[str, list[str]]:
    """Open the destination, create the views, close it.

    duckdb: `duckdb_path` (default concord.duckdb). postgres: `credentials` URL or dlt's
    DESTINATION__POSTGRES__CREDENTIALS. Any other dlt SQL destination goes through a dlt sql_client
    with the credentials dlt's config gives it (e.g. DESTINATION__SNOWFLAKE__CREDENTIALS).
    """
    if destination == "duckdb":
        import duckdb

        path = str(Path(duckdb_path or "concord.duckdb").expanduser().resolve())
        conn = duckdb.connect(path)
        try:
            return create_models(conn, dataset, "duckdb")
        finally:
            conn.close()
    if destination == "postgres":
        import psycopg2

        url = credentials or _dlt_secret("destination.postgres.credentials")
        if not url:
            raise ValueError("no PostgreSQL credentials: pass credentials= or set DESTINATION__POSTGRES__CREDENTIALS")
        conn = psycopg2.connect(_dsn(url))
        try:
            return create_models(conn, dataset, "postgres")
        finally:
            conn.close()
    import tempfile

    import dlt

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = dlt.pipeline(pipeline_name="concord_models", destination=destination, dataset_name=dataset,
                                pipelines_dir=pipelines_dir or tmp)
        return create_models(pipeline, dataset, destination)


def _dlt_secret(key: str) -> str | None:
    import dlt

    try:
        value = dlt.secrets.get(key)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, dict):  # [destination.postgres.credentials] given as a table
        from dlt.common.configuration.specs import ConnectionStringCredentials

        creds = ConnectionStringCredentials()
        creds.update(value)
        creds.drivername = creds.drivername or "postgresql"
        return creds.to_native_representation()
    return str(value)


def _dsn(url: str) -> str:
    """psycopg2 accepts postgresql:// URLs but not SQLAlchemy's postgresql+psycopg2://."""
    scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep and scheme.startswith("postgres") else url
