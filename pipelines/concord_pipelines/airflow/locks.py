"""Locks that hold across Airflow workers on different hosts: PostgreSQL advisory locks in the warehouse.

A file lock (what `run_export` takes) only protects runs on one host. Where the destination is
PostgreSQL, the lock lives in the warehouse itself, so two workers anywhere cannot run the same
pipeline at once, and the PostgreSQL server frees it when a worker dies (its session ends).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from concord_pipelines.errors import ConcurrentRunError

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (pg advisory locks take a bigint); never Python's salted hash()."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def postgres_url(destination: str, warehouse: str | None) -> str | None:
    """The warehouse URL when the destination is PostgreSQL: the Airflow connection, else dlt's env/config."""
    if destination != "postgres":
        return None
    if warehouse:
        return warehouse
    url = os.environ.get("DESTINATION__POSTGRES__CREDENTIALS")
    if url:
        return url
    try:
        import dlt

        value = dlt.secrets.get("destination.postgres.credentials")
    except Exception:  # no config at all: dlt's own error will say so when the run starts
        return None
    return value if isinstance(value, str) else None


def _connect(url: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(url, application_name="concord-airflow-lock")
    conn.autocommit = True  # a session-level lock, not one bound to a transaction
    return conn


@contextmanager
def run_lock(url: str | None, name: str) -> Iterator[None]:
    """Hold `name` exclusively across hosts, or fail at once: a second run of a pipeline waits for a retry."""
    with _advisory_lock(url, name, wait=False):
        yield


@contextmanager
def wait_lock(url: str | None, name: str) -> Iterator[None]:
    """Hold `name` exclusively across hosts, waiting for it (the task's execution_timeout bounds the wait)."""
    with _advisory_lock(url, name, wait=True):
        yield


@contextmanager
def _advisory_lock(url: str | None, name: str, wait: bool) -> Iterator[None]:
    if url is None:
        yield
        return
    conn = _connect(url)
    try:
        with conn.cursor() as cur:
            if wait:
                cur.execute("SELECT pg_advisory_lock(%s)", (lock_key(name),))
            else:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),))
                if not cur.fetchone()[0]:
                    raise ConcurrentRunError(f"another worker is running {name} (PostgreSQL advisory lock); "
                                             "this try fails and Airflow retries it later")
        yield
    finally:
        conn.close()  # ends the session, which releases the lock
