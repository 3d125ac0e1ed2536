"""Throughput of the Concord sandbox: pages of 1,000 consent events per second, server in its own process.

    python benchmarks/sandbox_throughput.py [--events 100000] [--seconds 5] [--clients 4]

Patterns: `window` = what an incremental connector sends (sort=dateUpdated asc inside a startDate/endDate
window, paging by offset); `default` = no sort (dateCreated desc). Each page is decoded with orjson and its
`count` checked, so the figures include a realistic client. Target: >= 100 pages/s.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.sandbox import SandboxConfig, SandboxProcess  # noqa: E402

PAGE = 1000


def run_client(sb: SandboxProcess, pattern: str, seconds: float, offset0: int, events: int, out: list[int]) -> None:
    path = f"/organizations/{sb.org_id}/consent-events"
    params: dict[str, str | int] = {"limit": PAGE}
    if pattern == "window":
        params.update(sort="dateUpdated", order="asc", startDate="2000-01-01T00:00:00Z", endDate="2100-01-01T00:00:00Z")
    pages = 0
    offset = offset0
    with httpx.Client(base_url=sb.base_url, headers={"x-api-key": sb.api_key}, timeout=30) as api:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            response = api.get(path, params={**params, "offset": offset})
            response.raise_for_status()
            assert orjson.loads(response.content)["count"] == PAGE
            pages += 1
            offset = (offset + PAGE) % (events - PAGE)
    out.append(pages)


def measure(sb: SandboxProcess, pattern: str, clients: int, seconds: float, events: int) -> float:
    counts: list[int] = []
    threads = [threading.Thread(target=run_client, args=(sb, pattern, seconds, i * 7 * PAGE % events, events, counts))
               for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for the concurrent run")
    args = parser.parse_args()
    started = time.perf_counter()
    with SandboxProcess(SandboxConfig(seed=1, events=args.events)) as sb:
        print(f"sandbox with {args.events:,} events ready in {time.perf_counter() - started:.1f} s (pid {sb.pid})")
        measure(sb, "window", 1, 1.0, args.events)  # warm-up: builds the default-order cache too
        measure(sb, "default", 1, 0.5, args.events)
        for pattern in ("window", "default"):
            for clients in (1, args.clients):
                rate = measure(sb, pattern, clients, args.seconds, args.events)
                print(f"{pattern:8s} clients={clients}: {rate:7.1f} pages/s  {rate * PAGE:11,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
