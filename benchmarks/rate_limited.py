"""A first load against a rate-limited API: how close to the server's limit the connector runs.

    python benchmarks/rate_limited.py [--events 100000] [--rate 10] [--latency-ms 100] [--max-offset 10000]

The sandbox runs in its own process with the `rate-limit:R` profile (a token bucket of R requests/s per
key, answering 429 with `Retry-After: 0`, which a naive client retries at once) and `latency:MS` on every
request. The connector runs as a user runs it (`concord-pipeline run`, consent events only, into a fresh
DuckDB file). The limit's throughput is R pages of 1,000 events a second; the goal is >= 85% of it with
no failed run. Reported: wall time of the run, the consent_events resource's own seconds (fetch and
convert, from the summary), requests, 429s, and events/s over both against R x 1,000.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))

from concord_pipelines.sandbox import SandboxConfig, SandboxProcess  # noqa: E402

NOW = "2026-11-20T12:00:00Z"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--max-offset", type=int, default=None, help="the connector's max_offset (default: its own)")
    args = parser.parse_args()

    profiles = f"rate-limit:{args.rate:g},latency:{args.latency_ms}"
    config = SandboxConfig(seed=3, events=args.events, days=30, now=NOW, profiles=profiles)
    with SandboxProcess(config) as sb, tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SOURCES__CONCORD__API_KEY": sb.api_key, "RUNTIME__DLTHUB_TELEMETRY": "false"}
        if args.max_offset is not None:
            env["SOURCES__CONCORD__MAX_OFFSET"] = str(args.max_offset)
        command = [sys.executable, "-m", "concord_pipelines.cli", "run", "--org", sb.org_id, "--base-url", sb.base_url,
                   "--resources", "consent_events", "--duckdb-path", f"{tmp}/bench.duckdb",
                   "--pipelines-dir", f"{tmp}/pipelines", "--lag-seconds", "0", "--no-dbt", "--quiet"]  # fmt: skip
        time.sleep(1.5)  # the bucket refills after start-up, as for a client that starts cold
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout, done.stderr, sep="\n")
        print(f"FAILED: exit {done.returncode}")
        return 1
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("consent_events ") and ln.count(".") >= 1
                and len(ln.split()) >= 8)  # fmt: skip
    items, pages, requests, retries, throttled, _rereads, seconds = line.split()[1:8]
    to_int = lambda text: int(re.sub(r"\D", "", text))  # noqa: E731
    limit_eps = args.rate * 1000
    fetch = float(seconds)
    print(f"rate limit {args.rate:g} req/s, latency {args.latency_ms} ms, {args.events:,} events")
    print(f"run wall time        {wall:6.2f} s   {args.events / wall:8.0f} events/s = {args.events / wall / limit_eps:5.1%} of the limit")
    print(f"consent_events fetch {fetch:6.2f} s   {args.events / fetch:8.0f} events/s = {args.events / fetch / limit_eps:5.1%} of the limit")
    print(f"requests {to_int(requests):,} (pages {to_int(pages):,}, items {to_int(items):,}), retries {to_int(retries):,}, "
          f"429s {to_int(throttled):,}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
