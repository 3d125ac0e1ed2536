"""Concord Privacy API and CDR Get Metrics connectors built on dlt."""

__version__ = "0.1.0"
