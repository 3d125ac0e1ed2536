"""Sandbox fixtures: real uvicorn servers on 127.0.0.1, clients over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from concord_pipelines.sandbox import SandboxConfig, SandboxServer

NOW = "2026-11-23T12:00:00Z"


def client(sb: SandboxServer, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(base_url=sb.base_url, headers={"x-api-key": sb.api_key}, timeout=timeout)


def admin(sb: SandboxServer) -> httpx.Client:
    return httpx.Client(base_url=sb.admin_url, headers={"x-api-key": sb.api_key}, timeout=10.0)


def fetch_all(api: httpx.Client, path: str, params: dict | None = None, limit: int = 1000) -> list[dict]:
    items: list[dict] = []
    while True:
        page = api.get(path, params={**(params or {}), "offset": len(items), "limit": limit}).json()
        items.extend(page["items"])
        if not page["items"] or len(items) >= page["total"]:
            return items


@pytest.fixture(scope="session")
def shared() -> Iterator[SandboxServer]:
    """Read-only sandbox shared by the whole session: never mutate it or set faults on it."""
    with SandboxServer(SandboxConfig(seed=7, events=3000, days=30, projects=3, now=NOW)) as sb:
        yield sb


@pytest.fixture
def fresh() -> Iterator[SandboxServer]:
    """A small private sandbox for tests that mutate data or inject faults."""
    with SandboxServer(SandboxConfig(seed=11, events=600, days=10, projects=3, now=NOW)) as sb:
        yield sb


@pytest.fixture(scope="session")
def api(shared: SandboxServer) -> Iterator[httpx.Client]:
    with client(shared) as c:
        yield c


@pytest.fixture(scope="session")
def org(shared: SandboxServer) -> str:
    return f"/organizations/{shared.org_id}"
