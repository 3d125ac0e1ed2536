"""Concord Privacy API and CDR Get Metrics connectors built on dlt.

    import dlt
    from concord_pipelines import concord_source, cdr_metrics_source

    dlt.pipeline("concord", destination="duckdb", dataset_name="concord_data").run(concord_source())

The sources are imported on first use.
"""

from __future__ import annotations

from typing import Any

from concord_pipelines.telemetry import telemetry_off_by_default

__version__ = "0.1.0"
__all__ = ["cdr_metrics_source", "concord_source"]

# dlt's anonymous telemetry is off for every use of this package (CLI, Airflow, `import` of a source);
# RUNTIME__DLTHUB_TELEMETRY=true or [runtime] dlthub_telemetry = true in .dlt/config.toml turn it on.
telemetry_off_by_default()


def __getattr__(name: str) -> Any:
    if name == "concord_source":
        from concord_pipelines.concord.source import concord_source

        return concord_source
    if name == "cdr_metrics_source":
        from concord_pipelines.cdr_metrics.source import cdr_metrics

        return cdr_metrics
    raise AttributeError(f"module 'concord_pipelines' has no attribute {name!r}")
