"""Logging filters shared by every command."""

from __future__ import annotations

import logging


class _ArrowHintNoise(logging.Filter):
    """Warnings dlt repeats on every run about things this project handles on purpose.

    - our declared hints (json, not-null keys) override arrow's types: that is what they are for;
    - a DuckDB file named like the dataset: pipelines.duckdb_compat makes those names unambiguous.
    """

    NOISE = ("when merging arrow schema", "is identical to the dataset name")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


_FILTER = _ArrowHintNoise()


def quiet_arrow_hint_warnings() -> None:
    logging.getLogger("dlt").addFilter(_FILTER)  # adding the same filter twice is a no-op
