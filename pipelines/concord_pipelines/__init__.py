"""Concord Privacy API and CDR Get Metrics connectors built on dlt.

    import dlt
    from concord_pipelines import concord_source, cdr_metrics_source

    dlt.pipeline("concord", destination="duckdb", dataset_name="concord_data").run(concord_source())

The sources are imported on first use, so `python -m concord_pipelines.sandbox` does not pay for dlt.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["cdr_metrics_source", "concord_source"]


def __getattr__(name: str) -> Any:
    if name == "concord_source":
        from concord_pipelines.concord.source import concord_source

        return concord_source
    if name == "cdr_metrics_source":
        from concord_pipelines.cdr_metrics.source import cdr_metrics

        return cdr_metrics
    raise AttributeError(f"module 'concord_pipelines' has no attribute {name!r}")
