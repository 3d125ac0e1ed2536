"""User-facing errors: one line that names the problem and the fix.

Anything raised as a `PipelineError` is printed by the CLI as a single `error: ...` line with a
non-zero exit code and no traceback (unless --debug). Messages must never contain secrets.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A failure the user can fix; `str(err)` is the whole message shown to them."""

    exit_code = 2


class ConfigError(PipelineError):
    """Bad or missing configuration (wrong key, malformed id, impossible date, ...)."""


class ApiError(PipelineError):
    """The remote API answered with an error we cannot retry away."""

    exit_code = 3


class ConcurrentRunError(PipelineError):
    """Another run holds the lock on the same pipeline or DuckDB file."""

    exit_code = 4


class Interrupted(BaseException):
    """SIGINT or SIGTERM. A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        name = "SIGINT" if signum == 2 else "SIGTERM" if signum == 15 else f"signal {signum}"
        super().__init__(
            f"interrupted by {name}; loaded data and state are as the last completed load left them, "
            "and the next run continues from there"
        )
