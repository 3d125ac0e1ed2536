"""Throughput of the Concord sandbox: pages of 1,000 consent events per second, server in its own process.

    python benchmarks/sandbox_throughput.py [--events 100000] [--seconds 5] [--clients 4]

Patterns: `window` = what an incremental connector sends (sort=dateUpdated asc inside a startDate/endDate
window, paging by offset); `default` = no sort (dateCreated desc). Each page is decoded with orjson and its
`count` checked, so the figures include a realistic client (which shares the 2 cores). Target: >= 100
pages/s. `server CPU ms/page` is the sandbox's own cost, independent of other load on the machine.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))

from concord_pipelines.sandbox import SandboxConfig, SandboxProcess  # noqa: E402

PAGE = 1000
RAW = False


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
            if RAW:  # only frame-check the page: leaves more of the shared CPUs to the server
                assert response.content.startswith(b'{"offset":') and len(response.content) > 500 * PAGE
            else:
                assert orjson.loads(response.content)["count"] == PAGE
            pages += 1
            offset = (offset + PAGE) % (events - PAGE)
    out.append(pages)


def measure(sb: SandboxProcess, pattern: str, clients: int, seconds: float, events: int) -> tuple[float, float]:
    """(pages/s, server CPU ms per page); the CPU figure does not depend on what else the machine runs."""
    server = psutil.Process(sb.pid)
    cpu_before = sum(server.cpu_times()[:2])
    counts: list[int] = []
    threads = [threading.Thread(target=run_client, args=(sb, pattern, seconds, i * 7 * PAGE % events, events, counts))
               for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cpu = sum(server.cpu_times()[:2]) - cpu_before
    return sum(counts) / elapsed, cpu * 1000 / max(1, sum(counts))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients for the concurrent run")
    parser.add_argument("--raw", action="store_true", help="do not decode pages in the client")
    args = parser.parse_args()
    global RAW
    RAW = args.raw
    started = time.perf_counter()
    with SandboxProcess(SandboxConfig(seed=1, events=args.events)) as sb:
        print(f"sandbox with {args.events:,} events ready in {time.perf_counter() - started:.1f} s (pid {sb.pid})")
        measure(sb, "window", 1, 1.0, args.events)  # warm-up: builds the default-order cache too
        measure(sb, "default", 1, 0.5, args.events)
        for pattern in ("window", "default"):
            for clients in (1, args.clients):
                rate, cpu_ms = measure(sb, pattern, clients, args.seconds, args.events)
                print(f"{pattern:8s} clients={clients}: {rate:7.1f} pages/s  {rate * PAGE:11,.0f} events/s  "
                      f"server CPU {cpu_ms:5.2f} ms/page (= {1000 / cpu_ms:6.0f} pages/s per core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
