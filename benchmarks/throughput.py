"""Throughput of the Concord export against its peers, on one sandbox, each run in its own process.

    python benchmarks/throughput.py [--events 100000] [--latency-ms 50] [--json results.json]
    python benchmarks/throughput.py --events 1000000 --baseline results-100k.json

Starts the sandbox (consent events only matter here) in its own process, then measures:
  ours: initial   `concord-pipeline run --resources consent_events` into an empty DuckDB file
  ours: rerun     the same again with no change at the source (re-reads the 2 h lookback)
  ours: +1%       the same after inserting 1% new events at the source
  peers           dlt rest_api with defaults, dlt rest_api with parquet, a raw sequential script
                  (see benchmarks/peers.py)
and repeats the first load and the peers with `--latency-ms` injected per request, to show what
concurrent paging buys (ours is also run with --concurrency 1 there).

Per run: events, wall seconds of the whole process (interpreter start to exit), events/s, CPU seconds
(user + system) and peak RSS (os.wait4 maxrss of the process, or the peak of polled RSS of its process
tree if larger). Ratios are events/s over the peer's events/s. Goals are checked at the end.

Our runs use, by default, an interpreter with the project installed as the README's main command
installs it (`uv sync --no-dev --frozen` into the work dir): no dev group, so no pandas, which
DuckDB's Python client imports for any query with parameters when it can (+30-65 MB of RSS). The same
first load is also run once in the current (dev) environment, to show that difference;
`--install current` runs everything in the current environment.

Runs use a bytecode cache in the work dir (PYTHONPYCACHEPREFIX) because this environment sets
PYTHONDONTWRITEBYTECODE=1 and the venv ships no .pyc files: without it every process spends ~2 s
compiling dlt, which an installed package does not. Subprocesses run in the work dir, so the repo's
.dlt/config.toml does not apply: what is measured is what the code does on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from concord_pipelines.sandbox import SandboxConfig, SandboxProcess  # noqa: E402

PEERS = Path(__file__).resolve().parent / "peers.py"
SUMMARY_TABLE = re.compile(r"^consent_events\s+([\d,]+)\s+([\d,]+|-|None)?")
# resource, items, pages, requests, retries, throttled, re-reads, seconds
SUMMARY_RESOURCE = re.compile(r"^consent_events\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)\s*$")


@dataclass
class Measured:
    name: str
    section: str
    events: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    rss_mb: float = 0.0
    ok: bool = True
    pages: int = 0
    requests: int = 0
    extract_seconds: float | None = None
    note: str = ""
    output: str = field(default="", repr=False)

    @property
    def rate(self) -> float:
        return self.events / self.wall if self.wall else 0.0


def measure(name: str, section: str, cmd: list[str], env: dict[str, str], cwd: Path, log_dir: Path) -> Measured:
    """Run `cmd` to completion; wall time, CPU time and peak RSS of that process alone."""
    log = log_dir / (re.sub(r"\W+", "_", f"{section}_{name}").strip("_") + ".log")
    with open(log, "w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        peak = _poll_rss(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        peak.stop()
    text = log.read_text()
    rss = max(usage.ru_maxrss / 1024, peak.peak / 2**20)
    result = Measured(name, section, wall=wall, cpu=usage.ru_utime + usage.ru_stime, rss_mb=rss, output=text)
    if proc.returncode != 0:
        result.ok = False
        result.note = f"exit {proc.returncode}, see {log}"
    return result


class _poll_rss:  # noqa: N801 - used like a function
    """Peak RSS of a process and its children, polled every 50 ms (covers worker processes)."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(pid,), daemon=True)
        self._thread.start()

    def _loop(self, pid: int) -> None:
        try:
            proc = psutil.Process(pid)
            while not self._stop.wait(0.05):
                total = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                self.peak = max(self.peak, total)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def parse_ours(result: Measured) -> Measured:
    for line in result.output.splitlines():
        if m := SUMMARY_RESOURCE.match(line):
            items, pages, requests = (int(g.replace(",", "")) for g in m.groups()[:3])
            result.pages, result.requests, result.extract_seconds = pages, requests, float(m.group(7))
            result.events = items
    if not result.ok or result.extract_seconds is None:
        result.ok = False
        result.note = result.note or "no summary printed"
    return result


def parse_peer(result: Measured) -> Measured:
    for line in reversed(result.output.splitlines()):
        if line.startswith("{"):
            data = json.loads(line)
            result.events, result.pages = data["events"], data["pages"]
            result.requests = data["pages"]
            return result
    result.ok = False
    result.note = result.note or "no result printed"
    return result


class Bench:
    def __init__(self, args: argparse.Namespace, sandbox: SandboxProcess, work: Path) -> None:
        self.args, self.sandbox, self.work = args, sandbox, work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith(("DESTINATION__", "LOAD__", "NORMALIZE__", "EXTRACT__", "DATA_WRITER__"))}
        self.env.update(
            SOURCES__CONCORD__API_KEY=sandbox.api_key,
            RUNTIME__DLTHUB_TELEMETRY="false",
            PYTHONPYCACHEPREFIX=str(args.pycache or work / "pycache"),
            PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        )
        self.results: list[Measured] = []
        self.python = sys.executable  # runs ours; peers always run in the current environment

    def warm_up(self) -> None:
        """Fill the bytecode cache so no measured run pays for compiling dlt.

        Importing is not enough: a run imports dlt's normalizers, DuckDB destination and load
        modules as it goes, and compiling them cost the first measured run ~1 s. So each
        interpreter runs a small export (the last hour of events) into a throwaway folder.
        """
        last_hour = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for python in dict.fromkeys([self.python, sys.executable]):
            folder = self.work / "warm-up"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            subprocess.run([python, *self._run_args(folder), "--start-date", last_hour], env=self.env, cwd=self.work,
                           check=True, stdout=subprocess.DEVNULL)
            shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-c", "import dlt.sources.rest_api"], env=self.env, cwd=self.work, check=True)

    def _run_args(self, folder: Path) -> list[str]:
        return [
            "-m", "concord_pipelines.cli", "run",
            "--org", self.sandbox.org_id, "--base-url", self.sandbox.base_url,
            "--resources", "consent_events", "--duckdb-path", str(folder / "concord.duckdb"),
            "--pipelines-dir", str(folder / "pipelines"), "--lag-seconds", "0", "--quiet",
            "--no-dbt",  # the export alone, as the peers do; dbt runs in its own process when on
            *(["--concurrency", str(self.args.concurrency)] if self.args.concurrency else []),
        ]  # fmt: skip

    def ours(self, name: str, section: str, target: str, *extra: str, fresh: bool = False, python: str | None = None) -> Measured:
        folder = self.work / target
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(exist_ok=True)
        cmd = [python or self.python, *self._run_args(folder), *extra]
        return self._record(parse_ours(measure(name, section, cmd, self.env, self.work, self.logs)))

    def peer(self, peer: str, name: str, section: str, max_events: int = 0) -> Measured:
        folder = self.work / f"{section}_{peer}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        cmd = [
            sys.executable, str(PEERS), peer, "--base-url", self.sandbox.base_url, "--org", self.sandbox.org_id,
            "--duckdb-path", str(folder / "peer.duckdb"), "--pipelines-dir", str(folder / "pipelines"),
            "--max-events", str(max_events),
        ]  # fmt: skip
        result = parse_peer(measure(name, section, cmd, self.env, self.work, self.logs))
        if max_events:
            result.note = (result.note + "; " if result.note else "") + f"first {max_events:,} events only (slow)"
        return self._record(result)

    def _record(self, result: Measured) -> Measured:
        self.results.append(result)
        flag = "" if result.ok else f"  FAILED: {result.note}"
        print(f"  {result.section:>9} | {result.name:<28} {result.events:>9,} ev {result.wall:7.2f} s {result.rate:9,.0f} ev/s "
              f"{result.rss_mb:6.0f} MB{flag}", flush=True)
        return result

    def admin(self, method: str, path: str, body: dict[str, Any]) -> Any:
        response = httpx.request(method, self.sandbox.admin_url + path, json=body, headers={"x-api-key": self.sandbox.api_key}, timeout=600)
        response.raise_for_status()
        return response.json()


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="concord-throughput-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = os.getloadavg()
    print(f"starting the sandbox with {args.events:,} consent events ...", flush=True)
    config = SandboxConfig(seed=args.seed, events=args.events, days=args.days)
    with SandboxProcess(config, timeout=1800) as sandbox:
        print(f"sandbox ready in {time.perf_counter() - started:.1f} s at {sandbox.base_url}; work dir {work}", flush=True)
        bench = Bench(args, sandbox, work)
        installed = production_python(work) if args.install == "production" else None
        bench.python = installed or sys.executable
        bench.warm_up()
        slow_cap = args.slow_peer_events if 0 < args.slow_peer_events < args.events else 0

        section = "loopback"
        bench.ours("ours: initial load", section, "ours", fresh=True)
        bench.ours("ours: rerun, no change", section, "ours")
        if installed:
            bench.ours("ours (dev env): initial load", section, "ours_dev", fresh=True, python=sys.executable)
        if not args.no_peers:
            bench.peer("raw", "raw sequential script", section)
            bench.peer("rest_api_parquet", "dlt rest_api, parquet", section)
            bench.peer("rest_api", "dlt rest_api, defaults", section, max_events=slow_cap)
        new = max(1, args.events // 100)
        bench.admin("POST", "/mutate", {"insert_events": new})
        bench.ours(f"ours: incremental, +{new:,} new", section, "ours")

        if args.latency_ms:
            section = f"{args.latency_ms:g} ms"
            bench.admin("PUT", "/faults", {"spec": f"latency={args.latency_ms:g}"})
            try:
                bench.ours("ours: initial load", section, "ours_latency", fresh=True)
                if not args.no_peers:
                    bench.ours("ours: initial, concurrency 1", section, "ours_latency_c1", "--concurrency", "1", fresh=True)
                    latency_cap = args.latency_peer_events if 0 < args.latency_peer_events < args.events else 0
                    bench.peer("raw", "raw sequential script", section, max_events=latency_cap)
                    bench.peer("rest_api_parquet", "dlt rest_api, parquet", section, max_events=latency_cap)
                    bench.peer("rest_api", "dlt rest_api, defaults", section, max_events=slow_cap)
            finally:
                bench.admin("PUT", "/faults", {"spec": "", "reset": True})
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "events": args.events,
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency or default_concurrency(),
        "ours_python": "production install (uv sync --no-dev: no pandas)" if installed else f"current environment ({sys.executable})",
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "seconds": time.perf_counter() - started,
        "results": [{**{k: v for k, v in asdict(r).items() if k != "output"}, "rate": r.rate} for r in bench.results],
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return report


def production_python(work: Path) -> str | None:
    """The interpreter of a fresh `uv sync --no-dev --frozen` of this project, or None without uv."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        print("uv not found: our runs use the current environment (--install current)", flush=True)
        return None
    venv = work / "production-venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run([uv, "sync", "--no-dev", "--frozen", "--quiet", "--project", str(ROOT)], env=env, check=True)
    return str(venv / "bin" / "python")


def default_concurrency() -> int:
    from concord_pipelines.concord import settings

    return settings.DEFAULT_CONCURRENCY


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else ""
    import dlt
    import duckdb
    import pyarrow

    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "dlt": dlt.__version__,
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
        "platform": platform.platform(),
    }


def find(report: dict[str, Any], section_prefix: str, name_prefix: str) -> dict[str, Any] | None:
    for r in report["results"]:
        if r["section"].startswith(section_prefix) and r["name"].startswith(name_prefix) and r["ok"]:
            return r
    return None


def print_report(report: dict[str, Any], baseline: dict[str, Any] | None) -> list[tuple[str, bool | None, str]]:
    m = report["machine"]
    print()
    print(f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}, dlt {m['dlt']}, "
          f"duckdb {m['duckdb']}, pyarrow {m['pyarrow']}")
    print(f"load average before/after: {report['load_average_before'][0]:.2f} / {report['load_average_after'][0]:.2f} "
          f"(other work on the machine slows every run)")
    print(f"command: {report['command']}")
    print(f"ours ran in: {report.get('ours_python', 'the current environment')}")
    print()
    header = f"{'section':>9} | {'run':<30} {'events':>9} {'wall s':>7} {'events/s':>9} {'CPU s':>6} {'peak RSS MB':>11} " \
             f"{'vs rest_api':>11} {'vs parquet':>10} {'vs raw':>6}"
    print(header)
    print("-" * len(header))
    for r in report["results"]:
        section = r["section"]
        ratios = []
        for peer in ("dlt rest_api, defaults", "dlt rest_api, parquet", "raw sequential script"):
            ref = find(report, section, peer)
            ratios.append(f"{r['rate'] / ref['rate']:.2f}x" if ref and ref["rate"] and r["ok"] and r["events"] else "-")
        print(f"{section:>9} | {r['name']:<30} {r['events']:>9,} {r['wall']:>7.2f} {r['rate']:>9,.0f} {r['cpu']:>6.1f} "
              f"{r['rss_mb']:>11.0f} {ratios[0]:>11} {ratios[1]:>10} {ratios[2]:>6}" + (f"  ({r['note']})" if r["note"] else ""))
    return check_goals(report, baseline)


def check_goals(report: dict[str, Any], baseline: dict[str, Any] | None) -> list[tuple[str, bool | None, str]]:
    goals: list[tuple[str, bool | None, str]] = []
    ours = find(report, "loopback", "ours: initial")
    parquet = find(report, "loopback", "dlt rest_api, parquet")
    raw = find(report, "loopback", "raw sequential script")
    rerun = find(report, "loopback", "ours: rerun")
    if ours and parquet:
        ratio = ours["rate"] / parquet["rate"]
        goals.append(("initial load >= 5x dlt rest_api with parquet", ratio >= 5, f"{ratio:.2f}x"))
    if ours and raw:
        ratio = ours["rate"] / raw["rate"]
        goals.append(("initial load >= 1.0x the raw sequential script", ratio >= 1.0, f"{ratio:.2f}x"))
    if rerun:
        goals.append(("rerun with no change < 3 s", rerun["wall"] < 3.0 if report["events"] >= 100_000 else None,
                      f"{rerun['wall']:.2f} s" + ("" if report["events"] >= 100_000 else " (goal is at 100,000 events)")))
    if ours:
        big = report["events"] >= 1_000_000
        goals.append(("peak RSS < 400 MB at 1,000,000 events", ours["rss_mb"] < 400 if big else None,
                      f"{ours['rss_mb']:.0f} MB at {report['events']:,} events"))
        base = find(baseline, "loopback", "ours: initial") if baseline else None
        if base:
            ratio = ours["rss_mb"] / base["rss_mb"]
            goals.append((f"peak RSS within 1.25x of the {baseline['events']:,}-event figure", ratio <= 1.25,
                          f"{ours['rss_mb']:.0f} / {base['rss_mb']:.0f} MB = {ratio:.2f}x"))
    slow = find(report, f"{report['latency_ms']:g} ms", "ours: initial load") if report["latency_ms"] else None
    if slow and slow.get("extract_seconds"):
        floor = slow["requests"] * report["latency_ms"] / 1000 / report["concurrency"]
        ratio = slow["extract_seconds"] / floor
        figure = (f"{slow['extract_seconds']:.2f} s vs floor {slow['requests']} requests x {report['latency_ms']:g} ms / "
                  f"{report['concurrency']} = {floor:.2f} s: {ratio:.2f}x (whole run {slow['wall']:.2f} s)")
        if ours and ours.get("extract_seconds"):
            # Fetching can not beat the same fetch without latency (CPU of client and sandbox on this machine).
            bound = max(floor, ours["extract_seconds"])
            figure += f"; vs max(floor, {ours['extract_seconds']:.2f} s fetching on loopback) = {slow['extract_seconds'] / bound:.2f}x"
        goals.append((f"with {report['latency_ms']:g} ms latency, fetching within 1.3x of pages x latency / concurrency",
                      ratio <= 1.3, figure))
    print()
    print("goals:")
    for text, met, figure in goals:
        verdict = "n/a " if met is None else ("MET " if met else "MISS")
        print(f"  [{verdict}] {text}: {figure}")
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="consent events in the sandbox (default 100000)")
    parser.add_argument("--days", type=int, default=30, help="days of history the events spread over (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="latency per request for the second pass (0: skip)")
    parser.add_argument("--concurrency", type=int, default=0, help="--concurrency for our runs (default: the connector's)")
    parser.add_argument("--slow-peer-events", type=int, default=20_000,
                        help="dlt rest_api with defaults reads only this many events (it runs at ~700 events/s; 0: all)")
    parser.add_argument("--latency-peer-events", type=int, default=0,
                        help="cap the raw and parquet peers under latency to this many events (default: all)")
    parser.add_argument("--install", choices=["production", "current"], default="production",
                        help="run ours in a fresh production install (uv sync --no-dev; default) or in the current environment")
    parser.add_argument("--no-peers", action="store_true", help="measure only our runs")
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument("--baseline", help="a --json result of a smaller run, for the RSS ratio")
    parser.add_argument("--workdir", help="keep DuckDB files, state and logs here (default: a temp dir, removed)")
    parser.add_argument("--pycache", help="bytecode cache dir for the runs (default: in the work dir)")
    parser.add_argument("--keep", action="store_true", help="do not delete the work dir")
    args = parser.parse_args(argv)
    if args.workdir:
        args.keep = True
    report = run_all(args)
    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    goals = print_report(report, baseline)
    report["goals"] = [{"goal": g, "met": met, "figure": fig} for g, met, fig in goals]
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if all(r["ok"] for r in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
