"""Concord Privacy API and CDR Get Metrics connectors built on dlt."""

from concord_pipelines.telemetry import telemetry_off_by_default

__version__ = "0.1.0"

# dlt's anonymous telemetry is off for every use of this package (CLI, Airflow, `import` of a source);
# RUNTIME__DLTHUB_TELEMETRY=true or [runtime] dlthub_telemetry = true in .dlt/config.toml turn it on.
telemetry_off_by_default()
