"""Concord sandbox: a deterministic local fake of the Concord Privacy API with fault injection.

    from pipelines.sandbox import SandboxConfig, SandboxServer
    with SandboxServer(SandboxConfig(seed=1, events=5000, now="2026-11-23T12:00:00Z")) as sb:
        httpx.get(f"{sb.base_url}/organizations/{sb.org_id}/consent-events", headers={"x-api-key": sb.api_key})

Semantics the reference leaves open are documented in `state` (date filters), `metrics`, `app` (errors,
ids), `faults` (the fault spec syntax) and `profiles` (behaviours of real backends, `--profile`).
"""

from pipelines.sandbox.app import create_app
from pipelines.sandbox.faults import Faults
from pipelines.sandbox.server import SandboxProcess, SandboxServer
from pipelines.sandbox.state import ListQuery, SandboxConfig, SandboxState

__all__ = ["Faults", "ListQuery", "SandboxConfig", "SandboxProcess", "SandboxServer", "SandboxState", "create_app"]
