"""`concord-pipeline sandbox`: serve the local Concord sandbox until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
import time

from concord_pipelines.errors import ConfigError
from concord_pipelines.sandbox.faults import __doc__ as FAULTS_DOC
from concord_pipelines.sandbox.profiles import __doc__ as PROFILES_DOC

DESCRIPTION = """\
Serve a deterministic fake of the Concord Privacy API (projects, consent events and types, compliance
requests and their events, tracker-scan history, usage metrics, data systems, regions) on loopback, with
fault injection and server profiles.

It first prints `base_url`, `org_id`, `api_key` and `admin_url` (one `key: value` line each), then serves
until Ctrl-C or SIGTERM. Admin endpoints (same x-api-key): GET/PUT /_sandbox/faults, GET/PUT /_sandbox/profiles,
POST /_sandbox/mutate, GET /_sandbox/stats, GET /_sandbox/truth/{resource}, GET/POST /_sandbox/clock.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sandbox", help="serve the local Concord sandbox API until Ctrl-C",
        description=DESCRIPTION,
        epilog="fault injection (--faults):\n" + (FAULTS_DOC or "") + "\nserver profiles (--profile):\n"
        + (PROFILES_DOC or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="port, 0 = any free port (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data seed; same seed = same data (default: %(default)s)")
    parser.add_argument("--events", type=int, default=10_000, help="number of consent events (default: %(default)s)")
    parser.add_argument("--days", type=int, default=30, help="days of history before now (default: %(default)s)")
    parser.add_argument("--projects", type=int, default=3, help="number of projects (default: %(default)s)")
    parser.add_argument("--now", default=None,
                        help="fixed clock, ISO date-time (default: real UTC now floored to the minute, ticking)")
    parser.add_argument("--faults", default=None, metavar="SPEC",
                        help='fault spec, e.g. "429=0.1,500=0.05,latency=50,cap=333,drop=next:2" (see below)')
    parser.add_argument("--profile", default="", metavar="SPEC",
                        help='server profiles, e.g. "elastic,rate-limit:10,unstable-ties" (see below)')
    parser.add_argument("--api-key", default=None, help="API key to accept (default: derived from the seed)")
    parser.add_argument("--org-id", default=None, help="organization UUID (default: derived from the seed)")
    parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    from concord_pipelines.sandbox.server import SandboxServer
    from concord_pipelines.sandbox.state import SandboxConfig, SandboxState

    config = SandboxConfig(seed=args.seed, events=args.events, days=args.days, projects=args.projects,
                           now=args.now, api_key=args.api_key, org_id=args.org_id, profiles=args.profile)
    try:
        state = SandboxState(config)
        if args.faults:
            state.faults.configure(args.faults)
    except ValueError as err:
        raise ConfigError(f"sandbox: {err}") from None
    state.serialize_all()  # first pages as fast as later ones
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with SandboxServer(state, host=args.host, port=args.port) as sandbox:
        print("Concord sandbox serving (Ctrl-C to stop)", flush=True)
        print(f"base_url: {sandbox.base_url}", flush=True)
        print(f"org_id: {sandbox.org_id}", flush=True)
        print(f"api_key: {sandbox.api_key}", flush=True)
        print(f"events: {len(state.events)}", flush=True)
        if state.profiles.get():
            print(f"profiles: {state.profiles.get()}", flush=True)
        print(f"admin_url: {sandbox.admin_url}", flush=True)
        while not stop.wait(0.5):
            time.sleep(0)
    return 0
