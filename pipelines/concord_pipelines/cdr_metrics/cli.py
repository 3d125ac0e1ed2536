"""`concord-pipeline cdr-metrics`: export CDR Get Metrics from one or more data holders."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from concord_pipelines.cdr_metrics import settings
from concord_pipelines.cdr_metrics.config import (
    check_concurrency,
    check_period,
    check_versions,
    holders_from_list,
    load_file,
)
from concord_pipelines.errors import ApiError, ConfigError

DESCRIPTION = """\
Call GET <AdminBaseUri>/cds-au/v1/admin/metrics on each data holder (payload versions 2..5),
and merge one row per observation into table metric_observations (plus one row per request in
snapshots) of the dataset. Run it daily: a holder only shows the last 7 days and 12 months.

One holder from flags (--holder, --base-url, ...), several from --config FILE (TOML or JSON),
or [[sources.cdr_metrics.holders]] in .dlt/config.toml / .dlt/secrets.toml when neither is given.
"""

EPILOG = """\
holders file (TOML; JSON is a list of the same objects or {"holders": [...]}):
  x_v = 5                      # optional run-wide settings; flags override them
  x_min_v = 2
  period = "ALL"
  concurrency = 4              # holders fetched at once
  [[holders]]
  name = "bank_a"
  base_url = "https://admin.bank-a.example"
  timezone = "Australia/Sydney" # its dates; also how a requestTime without offset is read
  token_env = "BANK_A_TOKEN"   # or token = "...", or token_endpoint + client_id + private_key_path
  cert = "client.pem"          # mTLS (optional): cert, key, ca
  key = "client.key"
  ca = "ca.pem"
  timeout = 30                 # seconds per HTTP attempt (default 30)
  max_attempts = 3             # per request; 429, 5xx, timeouts, connection errors are retried
  retry_budget = 120           # seconds this holder may take in all, waits included (default 120)

A requestTime without UTC offset is read in the holder's timezone, with a warning line. Fields the
standard does not define load as extra metrics when numeric; holder extensions (<HID>-name) and
non-numeric ones are skipped with a warning line naming them.

examples:
  concord-pipeline cdr-metrics --sandbox                       # local sandbox holder -> ./cdr.duckdb
  concord-pipeline cdr-metrics --holder bank_a --base-url https://admin.bank-a.example \\
      --timezone Australia/Sydney --token-env BANK_A_TOKEN --duckdb-path metrics.duckdb
  concord-pipeline cdr-metrics --config holders.toml --destination postgres

exit status: 0 all holders loaded; 3 some holder failed (the others are loaded); 2 bad input.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cdr-metrics",
        help="export CDR Get Metrics (v2..v5) from data holders",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("holders")
    src.add_argument("--config", metavar="FILE", help="TOML/JSON file with several [[holders]]")
    src.add_argument("--holder", metavar="NAME", help="the holder's name (data_holder column)")
    src.add_argument("--base-url", metavar="URL", help="the holder's AdminBaseUri")
    src.add_argument(
        "--timezone",
        metavar="TZ",
        help=f"IANA zone of the holder's dates and of a requestTime without offset (default {settings.DEFAULT_TIMEZONE})",
    )
    src.add_argument(
        "--sandbox", action="store_true", help="start the local sandbox holder and export from it"
    )
    src.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"seconds per HTTP attempt, for every holder (default {settings.TIMEOUT_S:g})",
    )
    src.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help=f"attempts per request: 429, 5xx, timeouts are retried (default {settings.MAX_ATTEMPTS})",
    )
    src.add_argument(
        "--retry-budget",
        type=float,
        metavar="SECONDS",
        help=f"seconds one holder may take in all, waits included (default {settings.RETRY_BUDGET_S:g})",
    )
    src.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help=f"holders fetched at once (default {settings.CONCURRENCY})",
    )
    auth = p.add_argument_group("auth (single holder)")
    auth.add_argument("--token", help="bearer token (prefer --token-env: flags show up in process lists)")
    auth.add_argument("--token-env", metavar="VAR", help="environment variable holding the bearer token")
    auth.add_argument(
        "--token-endpoint", metavar="URL", help="holder token endpoint (client_credentials, private_key_jwt)"
    )
    auth.add_argument(
        "--client-id", help="client id for the token endpoint (iss/sub of the client assertion)"
    )
    auth.add_argument("--private-key", metavar="PEM_FILE", help="private key that signs the client assertion")
    auth.add_argument(
        "--signing-alg",
        choices=settings.SIGNING_ALGORITHMS,
        help="client assertion algorithm (default PS256)",
    )
    auth.add_argument("--key-id", help="kid header of the client assertion")
    auth.add_argument("--cert", metavar="PEM_FILE", help="mTLS client certificate")
    auth.add_argument("--key", metavar="PEM_FILE", help="mTLS client key")
    auth.add_argument(
        "--ca", metavar="PEM_FILE", help="CA bundle that signed the holder's server certificate"
    )
    req = p.add_argument_group("request")
    req.add_argument(
        "--x-v", type=int, help=f"highest payload version to ask for (default {settings.DEFAULT_X_V})"
    )
    req.add_argument(
        "--x-min-v",
        type=_min_version,
        help=f"lowest acceptable version; 'none' sends no x-min-v (default {settings.DEFAULT_X_MIN_V})",
    )
    req.add_argument(
        "--period", type=str.upper, choices=settings.PERIODS, help="CURRENT, HISTORIC or ALL (default ALL)"
    )
    out = p.add_argument_group("destination")
    out.add_argument("--destination", default="duckdb", help="any dlt destination name (default duckdb)")
    out.add_argument(
        "--duckdb-path", metavar="PATH", help=f"DuckDB file (default ./{settings.DEFAULT_DUCKDB_PATH})"
    )
    out.add_argument(
        "--dataset", default=settings.DATASET_NAME, help="dataset/schema name (default cdr_metrics)"
    )
    out.add_argument(
        "--pipeline-name", default=settings.PIPELINE_NAME, help="dlt pipeline name (default cdr_metrics)"
    )
    out.add_argument("--pipelines-dir", metavar="DIR", help="dlt working dir (default ~/.dlt/pipelines)")
    p.set_defaults(handler=handle)


def _min_version(raw: str) -> int | str:
    if raw.lower() in ("none", "0"):
        return "none"
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer or 'none', got {raw!r}") from None


LIMIT_FLAGS = (
    "timeout",
    "max_attempts",
    "retry_budget",
)  # per-holder keys; the flags set them for every holder
SINGLE_FLAGS = (
    "token",
    "token_env",
    "token_endpoint",
    "client_id",
    "private_key",
    "signing_alg",
    "key_id",
    "cert",
    "key",
    "ca",
)


def handle(args: argparse.Namespace) -> int:
    from concord_pipelines.cdr_metrics.runner import make_pipeline, run

    file_settings, holders = _holders(args)
    x_v = args.x_v if args.x_v is not None else file_settings.get("x_v", settings.DEFAULT_X_V)
    x_min_v: Any = (
        args.x_min_v if args.x_min_v is not None else file_settings.get("x_min_v", settings.DEFAULT_X_MIN_V)
    )
    x_min_v = None if x_min_v == "none" else x_min_v
    check_versions(x_v, x_min_v)
    period = check_period(args.period or file_settings.get("period", settings.DEFAULT_PERIOD))
    concurrency = check_concurrency(
        args.concurrency
        if args.concurrency is not None
        else file_settings.get("concurrency", settings.CONCURRENCY)
    )
    duckdb_path = args.duckdb_path or (settings.DEFAULT_DUCKDB_PATH if args.destination == "duckdb" else None)
    pipeline = make_pipeline(
        args.destination, duckdb_path, args.dataset, args.pipeline_name, args.pipelines_dir
    )
    with _sandbox(args, holders) as holders:
        result = run(holders, pipeline, x_v=x_v, x_min_v=x_min_v, period=period, concurrency=concurrency)
    print(result.summary())
    where = f" into {duckdb_path}" if duckdb_path else f" into {args.destination}"
    print(f"dataset {args.dataset}{where}; {result.seconds:.1f}s")
    for line in result.warning_lines() + result.error_lines():
        print(line, file=sys.stderr)
    return 0 if result.ok else ApiError.exit_code


def _holders(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    limits = {k: getattr(args, k) for k in LIMIT_FLAGS if getattr(args, k) is not None}
    file_settings, holders = _configured_holders(args)
    if limits:
        holders = [{**h, **limits} for h in holders]
        holders_from_list(holders)
    return file_settings, holders


def _configured_holders(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    single = {k: getattr(args, k) for k in SINGLE_FLAGS if getattr(args, k) is not None}
    if "private_key" in single:  # the flag names a file; `private_key` in config holds PEM text
        single["private_key_path"] = single.pop("private_key")
    if args.config:
        if args.holder or args.base_url or args.sandbox or single:
            raise ConfigError(
                "--config FILE describes the holders; drop --holder/--base-url/--sandbox and auth flags"
            )
        section = load_file(args.config)
        raw = section["holders"]
        holders_from_list(raw)  # fail fast on bad input before anything is called
        return {k: v for k, v in section.items() if k != "holders"}, [dict(h) for h in _as_list(raw)]
    if args.sandbox:
        if args.base_url:
            raise ConfigError("--sandbox starts its own holder; drop --base-url")
        return {}, [{"name": args.holder or "sandbox", "timezone": args.timezone, **single}]
    if args.holder or args.base_url:
        if not (args.holder and args.base_url):
            raise ConfigError(
                "a single holder needs both --holder NAME and --base-url URL (or use --config FILE)"
            )
        holder = {"name": args.holder, "base_url": args.base_url, "timezone": args.timezone, **single}
        holders_from_list([holder])
        return {}, [holder]
    return {}, _holders_from_dlt_config()


def _holders_from_dlt_config() -> list[dict[str, Any]]:
    import dlt

    try:
        raw = dlt.config[f"sources.{settings.SOURCE_NAME}.holders"]
    except Exception:
        raw = None
    if not raw:
        raise ConfigError(
            "no holders: pass --holder NAME --base-url URL, --config FILE, --sandbox, "
            "or add [[sources.cdr_metrics.holders]] to .dlt/config.toml"
        )
    holders_from_list(raw)
    return [dict(h) for h in _as_list(raw)]


def _as_list(raw: Any) -> list[Any]:
    return [raw] if isinstance(raw, dict) else list(raw)


@contextlib.contextmanager
def _sandbox(args: argparse.Namespace, holders: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    if not args.sandbox:
        yield holders
        return
    from concord_pipelines.sandbox.cdr_holder import CdrHolderServer, HolderState

    state = HolderState(
        name=holders[0]["name"], timezone=holders[0].get("timezone") or settings.DEFAULT_TIMEZONE
    )
    with CdrHolderServer(state) as server:
        yield [{**holders[0], "base_url": server.url}]
