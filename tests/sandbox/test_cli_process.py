"""The `sandbox` subcommand and SandboxProcess (the sandbox in its own process)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from concord_pipelines.sandbox import SandboxConfig, SandboxProcess
from concord_pipelines.sandbox.__main__ import main as sandbox_main
from tests.sandbox.conftest import NOW


def test_process_serves_and_stops() -> None:
    config = SandboxConfig(seed=3, events=200, now=NOW, faults="500=next:1")
    with SandboxProcess(config) as sb:
        assert sb.base_url.endswith("/privacy-v1") and sb.admin_url.endswith("/_sandbox")
        headers = {"x-api-key": sb.api_key}
        url = f"{sb.base_url}/organizations/{sb.org_id}/consent-events"
        assert httpx.get(url, headers=headers).status_code == 500  # --faults reached the child
        assert httpx.get(url, headers=headers).json()["total"] == 200
        proc = sb.proc
    assert proc is not None and proc.returncode is not None  # stopped on exit


def test_help_documents_the_fault_syntax() -> None:
    out = subprocess.run([sys.executable, "-m", "concord_pipelines.sandbox", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for text in ("--faults", "next:N", "retry_after", "cap=N", "--api-key", "--org-id", "/_sandbox/mutate"):
        assert text in out


def test_bad_fault_spec_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert sandbox_main(["--events", "10", "--port", "0", "--faults", "teapot=1"]) == 2
    assert capsys.readouterr().err.startswith("error: sandbox: unknown fault 'teapot'")


@pytest.mark.slow  # concord_pipelines.cli imports every subcommand (dlt): seconds of imports on a busy machine
def test_registered_as_concord_pipeline_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    from concord_pipelines.cli import main

    assert main(["sandbox", "--events", "10", "--port", "0", "--faults", "cap=x"]) == 2
    assert capsys.readouterr().err.startswith("error: sandbox:")
