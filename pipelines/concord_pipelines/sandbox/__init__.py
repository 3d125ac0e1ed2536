"""Concord sandbox: a deterministic local fake of the Concord Privacy API with fault injection.

    from concord_pipelines.sandbox import SandboxConfig, SandboxServer
    with SandboxServer(SandboxConfig(seed=1, events=5000, now="2026-11-23T12:00:00Z")) as sb:
        httpx.get(f"{sb.base_url}/organizations/{sb.org_id}/consent-events", headers={"x-api-key": sb.api_key})

Semantics the reference leaves open are documented in `state` (date filters), `metrics`, `app` (errors,
ids), `faults` (the fault spec syntax) and `profiles` (behaviours of real backends, `--profile`).
"""

from concord_pipelines.sandbox.app import create_app
from concord_pipelines.sandbox.faults import Faults
from concord_pipelines.sandbox.server import SandboxProcess, SandboxServer
from concord_pipelines.sandbox.state import ListQuery, SandboxConfig, SandboxState

__all__ = ["Faults", "ListQuery", "SandboxConfig", "SandboxProcess", "SandboxServer", "SandboxState", "create_app"]
