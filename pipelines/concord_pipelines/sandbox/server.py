"""Run the sandbox: in a thread of this process (SandboxServer) or as a child process (SandboxProcess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import TracebackType

from concord_pipelines.sandbox.app import create_app
from concord_pipelines.sandbox.state import SandboxConfig, SandboxState
from concord_pipelines.serve import BackgroundServer, free_port


class SandboxServer:
    """`with SandboxServer(SandboxConfig(seed=1)) as sb: httpx.get(sb.base_url + ...)` - uvicorn in a thread."""

    def __init__(self, config_or_state: SandboxConfig | SandboxState | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        state = config_or_state if isinstance(config_or_state, SandboxState) else SandboxState(config_or_state)
        self.state = state
        # The app sets Date from the sandbox clock; uvicorn's own header would carry the host's time.
        self._server = BackgroundServer(create_app(state), host=host, port=port, date_header=False)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def base_url(self) -> str:
        return self._server.url + "/privacy-v1"

    @property
    def admin_url(self) -> str:
        return self._server.url + "/_sandbox"

    @property
    def org_id(self) -> str:
        return self.state.org_id

    @property
    def api_key(self) -> str:
        return self.state.api_key

    def start(self) -> SandboxServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def cli_args(config: SandboxConfig, host: str, port: int) -> list[str]:
    args = ["--host", host, "--port", str(port), "--seed", str(config.seed), "--events", str(config.events),
            "--days", str(config.days), "--projects", str(config.projects)]
    if config.now is not None:
        args += ["--now", config.now if isinstance(config.now, str) else config.now.isoformat()]
    if config.api_key:
        args += ["--api-key", config.api_key]
    if config.org_id:
        args += ["--org-id", config.org_id]
    if config.faults:
        spec = config.faults if isinstance(config.faults, str) else ",".join(f"{k}={v}" for k, v in config.faults.items())
        args += ["--faults", spec]
    if config.profiles:
        args += ["--profile", config.profiles]
    return args


class SandboxProcess:
    """The sandbox in a child process (`python -m concord_pipelines.sandbox ...`), for benchmarks and crash tests."""

    def __init__(self, config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 120.0) -> None:
        self.config = config or SandboxConfig()
        self.host, self.port = host, port or free_port(host)
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.info: dict[str, str] = {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.info["base_url"]

    @property
    def admin_url(self) -> str:
        return self.info["admin_url"]

    @property
    def org_id(self) -> str:
        return self.info["org_id"]

    @property
    def api_key(self) -> str:
        return self.info["api_key"]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> SandboxProcess:
        cmd = [sys.executable, "-m", "concord_pipelines.sandbox", *cli_args(self.config, self.host, self.port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + self.timeout
        assert self.proc.stdout is not None
        # The CLI prints `key: value` lines and `admin_url` last, once the socket is listening.
        while "admin_url" not in self.info:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sandbox process did not start (exit code {self.proc.returncode})")
            key, sep, value = line.strip().partition(": ")
            if sep:
                self.info[key.strip()] = value.strip()
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
