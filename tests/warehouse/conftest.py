"""Fixtures of the warehouse tests: one sandbox, one DuckDB export of it, a throwaway PostgreSQL server.

The PostgreSQL fixture finds the server binaries or, as root with apt, installs Debian's `postgresql`;
it never skips in CI (CI=true): a missing server there is a failure, not a skip.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from concord_pipelines.concord.runner import RunOptions, RunResult, run_export
from concord_pipelines.sandbox import SandboxConfig, SandboxServer
from concord_pipelines.serve import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SANDBOX_CONFIG = dict(seed=11, events=2000, days=30, now="2026-11-20T12:00:00Z")


def export(sb: SandboxServer, *, destination: str = "duckdb", duckdb_path: str | None = None,
           pipelines_dir: str, pipeline_name: str = "concord", **extra: object) -> RunResult:
    """One full export of the sandbox (lag 0: the sandbox clock is fixed, everything is final; the run ends at the
    server's clock, so two exports of the sandbox are identical even across midnight)."""
    return run_export(RunOptions(organization_id=sb.org_id, api_key=sb.api_key, base_url=sb.base_url,
                                 destination=destination, duckdb_path=duckdb_path, pipelines_dir=pipelines_dir,
                                 pipeline_name=pipeline_name, lag_seconds=0, progress=False,
                                 **extra))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(**SANDBOX_CONFIG)) as sb:
        yield sb


@pytest.fixture(scope="session")
def duckdb_export(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding a full export of `sandbox` (treat as read-only; copy it to write)."""
    root = tmp_path_factory.mktemp("duckdb_export")
    path = root / "concord.duckdb"
    export(sandbox, duckdb_path=str(path), pipelines_dir=str(root / "pipelines"))
    return path


# ---- PostgreSQL ---------------------------------------------------------------------------------------


@dataclass
class PostgresServer:
    url: str  # postgresql://user:password@127.0.0.1:port/db
    host: str
    port: int
    user: str
    password: str
    database: str
    bin_dir: Path


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"no PostgreSQL server binaries: {reason}")


def find_postgres_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0, reverse=True)
    candidates += ["/usr/local/bin/initdb", "/usr/local/pgsql/bin/initdb"]
    which = shutil.which("initdb")
    if which:
        candidates.append(which)
    for candidate in candidates:
        path = Path(candidate)
        if path.exists() and (path.parent / "pg_ctl").exists():
            return path.parent
    return None


def install_postgres() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True, timeout=300)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"], check=True, env=env,
                   capture_output=True, timeout=600)


def _service_user() -> str:
    """PostgreSQL refuses to run as root: use `postgres` (Debian's package creates it) or make one."""
    for name in ("postgres", "concord-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "concord-pg"], check=True)
    return "concord-pg"


@contextmanager
def _one_setup_at_a_time() -> Iterator[None]:
    """Each pytest-xdist worker that needs PostgreSQL starts its own server (own data folder and port), but
    two at once would race in apt-get (dpkg's lock), in useradd, and between choosing a free port and binding it."""
    with open(Path(tempfile.gettempdir()) / "concord-pg-setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with _one_setup_at_a_time():
        server, stop = _start_postgres()
    try:
        yield server
    finally:
        stop()


def _start_postgres() -> tuple[PostgresServer, Callable[[], None]]:
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            _unavailable("not found under /usr/lib/postgresql/*/bin or /usr/local/bin, and installing them needs "
                         "root and apt-get (run `apt-get install postgresql` or set CI)")
        install_postgres()
        bin_dir = find_postgres_bin()
        if bin_dir is None:
            pytest.fail("apt-get install postgresql succeeded but no initdb was found")
    assert bin_dir is not None
    as_root = os.geteuid() == 0
    user = _service_user() if as_root else None

    def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
        cmd = [str(bin_dir / args[0]), *args[1:]]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]

    root = Path(tempfile.mkdtemp(prefix="concord-pg-"))  # /tmp, reachable by the service user
    data, admin_password = root / "data", secrets.token_urlsafe(16)
    pwfile = root / "pw"
    pwfile.write_text(admin_password + "\n")
    if user:
        os.chmod(root, 0o700)
        shutil.chown(root, user)
        shutil.chown(pwfile, user)
    port = free_port("127.0.0.1")
    try:
        run("initdb", "-D", str(data), "-U", "concord_admin", "--pwfile", str(pwfile), "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale")
        run("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    except subprocess.CalledProcessError as err:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {err.stderr or err.stdout}\n{log[-2000:]}")
    import psycopg2

    password = secrets.token_urlsafe(16)
    admin = psycopg2.connect(host="127.0.0.1", port=port, user="concord_admin", password=admin_password, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("CREATE USER concord_test WITH PASSWORD %s", (password,))
        cur.execute("CREATE DATABASE concord_test OWNER concord_test")
    admin.close()
    server = PostgresServer(url=f"postgresql://concord_test:{password}@127.0.0.1:{port}/concord_test", host="127.0.0.1",
                            port=port, user="concord_test", password=password, database="concord_test", bin_dir=bin_dir)

    def stop() -> None:
        try:
            run("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            time.sleep(1)
        shutil.rmtree(root, ignore_errors=True)

    return server, stop


@pytest.fixture(scope="session")
def postgres_export(sandbox: SandboxServer, postgres_server: PostgresServer,
                    tmp_path_factory: pytest.TempPathFactory) -> PostgresServer:
    """The same full export as `duckdb_export`, into PostgreSQL (the default dataset, `concord_data`)."""
    root = tmp_path_factory.mktemp("postgres_export")
    key = "DESTINATION__POSTGRES__CREDENTIALS"
    previous = os.environ.get(key)
    os.environ[key] = postgres_server.url
    try:
        export(sandbox, destination="postgres", pipelines_dir=str(root / "pipelines"))
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous
    return postgres_server
