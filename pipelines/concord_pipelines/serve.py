"""Serve an ASGI app with uvicorn on loopback in a background thread (sandbox, tests, demo)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from types import TracebackType

import uvicorn

from concord_pipelines.errors import ConfigError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """A busy port as one ConfigError line; SO_REUSEADDR as uvicorn binds, so TIME_WAIT is not 'busy'."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use: choose another with --port (0 = any free port) or stop what uses it") from None
            raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror}; choose another --host/--port") from None


class BackgroundServer:
    """`with BackgroundServer(app) as srv: srv.url` - uvicorn in a daemon thread, stopped on exit."""

    def __init__(self, app: object, host: str = "127.0.0.1", port: int = 0, **uvicorn_options: object) -> None:
        self.host = host
        self.port = port or free_port(host)
        options = {"log_level": "warning", "access_log": False, "lifespan": "off", **uvicorn_options}
        self._server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, **options))
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        check_port_free(self.host, self.port)  # uvicorn would log a traceback-like error and we a RuntimeError
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
