"""Logging filters shared by every command."""

from __future__ import annotations

import logging


class _ArrowHintNoise(logging.Filter):
    """Warnings dlt repeats on every run about things this project handles on purpose, for its own resources
    only: our declared hints (json, not-null keys) override arrow's types, which is what they are for (arrow
    carries json as text and every column as nullable). (A DuckDB file named like its dataset, which dlt also
    warns about, is refused by the runners: the names would be ambiguous.)
    """

    NOISE = ("when merging arrow schema",)

    def __init__(self) -> None:
        super().__init__()
        self.resources: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "when merging arrow schema" in message:
            return not any(f"In resource: {name}," in message for name in self.resources)
        return not any(noise in message for noise in self.NOISE)


_FILTER = _ArrowHintNoise()


def quiet_arrow_hint_warnings(resources: set[str] | frozenset[str] = frozenset()) -> None:
    """Called by each source with its resource names (a user's own resources keep dlt's warning)."""
    _FILTER.resources.update(resources)
    logging.getLogger("dlt").addFilter(_FILTER)  # adding the same filter twice is a no-op


class _OneLineFailures(logging.Filter):
    """Without --debug a failure is the CLI's single `error:` line: log records must not add tracebacks.

    dlt logs a failed load job at ERROR with its traceback; the CLI reports the same failure itself.
    """

    def __init__(self, drop_errors: bool) -> None:
        super().__init__()
        self.drop_errors = drop_errors

    def filter(self, record: logging.LogRecord) -> bool:
        if self.drop_errors and record.levelno >= logging.ERROR:
            return False
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_DLT_ONE_LINE = _OneLineFailures(drop_errors=True)
_ROOT_ONE_LINE = _OneLineFailures(drop_errors=False)


def one_line_failures() -> None:
    """Call after logging is configured: dlt's own logger (no propagation) and the root handlers."""
    logging.getLogger("dlt").addFilter(_DLT_ONE_LINE)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ROOT_ONE_LINE)
