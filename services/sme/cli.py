"""`sme`: the command line. Each service is a subcommand; settings come from SME_* env vars."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sme.contracts.channels import Channel
from sme.errors import SmeError
from sme.gc_tuning import tune_gc
from sme.settings import Settings, load_settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def engine_worker(app: Any, log_level: str) -> Any:
    """The Faust worker that runs the engine's app, logging at `log_level` and no lower.

    Faust's start-up spinner sets the root logger to DEBUG whenever the level is WARNING or
    above (so that every record spins it): every `log.debug` in aiokafka's send path then
    built a LogRecord, about 8% of the engine's time. No spinner: the level set is the level."""
    from faust import Worker

    worker = Worker(app, loglevel=log_level, quiet=True)
    worker.spinner = None
    return worker


def run_engine(settings: Settings) -> None:
    """Run one engine instance (a Faust worker) until SIGINT/SIGTERM."""
    from sme.engine.app import Engine
    from sme.topics import ensure_topics

    asyncio.run(ensure_topics(settings))
    asyncio.set_event_loop(asyncio.new_event_loop())
    engine = Engine(settings)
    tune_gc()
    print(
        f"sme engine: metrics at http://{settings.engine_web_host}:{settings.engine_web_port}/metrics",
        flush=True,
    )
    engine_worker(engine.app, settings.log_level).execute_from_commandline()


def run_gateway(settings: Settings) -> None:
    """Serve the gateway (HTTP API, dashboard, ClickHouse sink) until SIGINT/SIGTERM."""
    import uvicorn

    from sme.gateway.app import create_app

    base = f"http://{settings.http_host}:{settings.http_port}"
    print(
        f"sme gateway: API {base}/api/v1  dashboard {base}/dashboard  metrics {base}/metrics",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


def run_topics(settings: Settings) -> None:
    from sme.topics import ensure_topics

    created = asyncio.run(ensure_topics(settings))
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))


def run_configs_apply(settings: Settings, paths: list[Path]) -> int:
    """Every file validated first, then each document written through the configuration
    API's own rules (versioned create-or-update, STOPPED final, kill switch, one workspace
    per id, a `config_changed` activity); stops at the first document refused."""
    from sme.config_publish import apply_records, load_file
    from sme.gateway.config_service import InvalidConfigError
    from sme.topics import ensure_topics

    records = [record for path in paths for record in load_file(path)]

    async def apply() -> None:
        await ensure_topics(settings)
        for applied in await apply_records(settings, records):
            print(applied, flush=True)

    try:
        asyncio.run(apply())
    except InvalidConfigError as exc:
        for error in exc.errors:
            where = ".".join(str(part) for part in error["loc"][1:])
            print(f"sme: invalid configuration: {where}: {error['msg']}", file=sys.stderr)
        return 2
    return 0


def run_report(settings: Settings, args: argparse.Namespace) -> int:
    """Fetch a report from the gateway (which owns the embedded store) over HTTP."""
    from sme.gateway_client import connect

    with connect(settings, args.gateway, args.key) as client:
        body = client.report(args.config, args.format, args.date_from, args.date_to)
    if args.out:
        args.out.write_bytes(body)
    else:
        sys.stdout.buffer.write(body)
    return 0


def run_sql(settings: Settings, args: argparse.Namespace) -> int:
    """One read-only query through the gateway; tab-separated output with a header."""
    from sme.gateway_client import connect

    with connect(settings, args.gateway, args.key) as client:
        answer = client.sql(args.query, args.max_rows)
    print("\t".join(answer.columns))
    for row in answer.rows:
        print("\t".join("" if v is None else str(v) for v in row))
    if answer.truncated:
        print(f"(truncated at {args.max_rows} rows)", file=sys.stderr)
    return 0


def run_sender(settings: Settings, args: argparse.Namespace) -> int:
    """Run one channel sender until SIGINT/SIGTERM (see `sme.senders`)."""
    from sme.senders.main import run_smtp_sender, run_webhook_sender

    if args.sender_kind == "smtp":
        return run_smtp_sender(settings, args.templates)
    return run_webhook_sender(settings, Channel(args.channel), args.url)


def run_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from sme.gateway.auth import KEY_PREFIX, add_key
    from sme.gateway.ingest_api import WRITE_KEY_PREFIX

    if args.write:
        setting, default, prefix = "SME_WRITE_KEYS_FILE", "write-keys.json", WRITE_KEY_PREFIX
        configured = settings.write_keys_file
    else:
        setting, default, prefix = "SME_API_KEYS_FILE", "api-keys.json", KEY_PREFIX
        configured = settings.api_keys_file
    path = args.file or configured or settings.data_dir / default
    path.parent.mkdir(parents=True, exist_ok=True)
    supplied = sys.stdin.readline().strip() if args.key_stdin else None
    key = add_key(path, args.key_id, args.workspace, supplied, prefix)
    if supplied is None:
        print(key)
    print(f"stored the hash in {path}; set {setting}={path}", file=sys.stderr)
    return 0


def run_schemas(directory: Path) -> None:
    from sme.contracts.schemas import write_schemas

    for path in write_schemas(directory):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sme", description="Sequential Messaging Engine.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "engine",
        help="run an engine instance (Faust worker)",
        description="Consume sme.events, keep per-user state, emit commands and activities. "
        "Settings: SME_* environment variables (see README).",
    )
    sub.add_parser(
        "gateway",
        help="run the gateway (HTTP API, dashboard, ClickHouse sink)",
        description="Serve the HTTP API and dashboard and sink sme.activities into ClickHouse. "
        "Settings: SME_* environment variables (see README).",
    )
    sub.add_parser(
        "topics",
        help="create missing Kafka topics",
        description="Create the SME topics that do not exist yet.",
    )
    from sme.simulator.cli import add_parser as add_simulate

    add_simulate(sub)
    from sme.evaluate import add_parser as add_evaluate

    add_evaluate(sub)
    from sme.demo.cli import add_parser as add_demo

    add_demo(sub)
    configs = sub.add_parser(
        "configs",
        help="write configurations through the configuration API's rules",
        description="Create or update sequence configurations or workspace settings (JSON "
        "files) with the configuration API's write path: versioned, validated, logged as "
        "config_changed; STOPPED is final and the kill switch holds. Needs only the broker.",
    )
    configs_sub = configs.add_subparsers(dest="configs_command", required=True, metavar="ACTION")
    apply = configs_sub.add_parser(
        "apply",
        help="validate and apply JSON files",
        description="Validate each file (one document or a list), then create or update "
        "each configuration it names (an unchanged one is left as it is).",
    )
    apply.add_argument("paths", type=Path, nargs="+", metavar="FILE")
    report = sub.add_parser(
        "report",
        help="export a sequence's report through the gateway",
        description="Daily metrics per arm and channel plus the lift summary, fetched from the "
        "gateway's HTTP API (it owns the embedded ClickHouse store).",
    )
    report.add_argument("--config", required=True, help="sequence id")
    report.add_argument("--format", choices=["csv", "json", "parquet"], default="csv")
    report.add_argument(
        "--from",
        dest="date_from",
        type=date.fromisoformat,
        help="UTC date, inclusive (default: 30 days ago)",
    )
    report.add_argument(
        "--to",
        dest="date_to",
        type=date.fromisoformat,
        help="UTC date, exclusive (default: tomorrow)",
    )
    report.add_argument("--out", type=Path, help="write to a file instead of standard output")
    report.add_argument("--gateway", help="gateway URL (default: from SME_HTTP_HOST/PORT)")
    report.add_argument("--key", help="API key (default: SME_ADMIN_API_KEY)")
    sql = sub.add_parser(
        "sql",
        help="run a read-only SQL query through the gateway",
        description="One read-only query against the SME ClickHouse database, through the "
        "gateway (admin key; row and time limits). With a ClickHouse server, any client works too.",
    )
    sql.add_argument("query", help='e.g. "SELECT type, count() FROM activities GROUP BY type"')
    sql.add_argument("--max-rows", type=int, default=1000)
    sql.add_argument("--gateway", help="gateway URL (default: from SME_HTTP_HOST/PORT)")
    sql.add_argument("--key", help="API key (default: SME_ADMIN_API_KEY)")
    keys = sub.add_parser(
        "keys",
        help="manage gateway API keys",
        description="API keys are bound to one workspace and stored hashed in SME_API_KEYS_FILE.",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser(
        "create", help="create a key (printed once; only its hash is kept)"
    )
    create.add_argument("--workspace", required=True, help="the workspace the key may see")
    create.add_argument(
        "--id", required=True, dest="key_id", help="a name for the key (logged as the actor)"
    )
    create.add_argument(
        "--file",
        type=Path,
        default=None,
        help="keys file (default: SME_API_KEYS_FILE, else <data dir>/api-keys.json; with "
        "--write: SME_WRITE_KEYS_FILE, else <data dir>/write-keys.json)",
    )
    create.add_argument(
        "--write",
        action="store_true",
        help="an ingest write key (HTTP Basic user for /v1/track, /v1/identify, /v1/batch): "
        "it can only send events to its workspace, never read or configure",
    )
    create.add_argument(
        "--key-stdin",
        action="store_true",
        help="add the key read from standard input instead of a random one (it must be at "
        "least 24 characters and about 128 bits; never pass a key as an argument)",
    )
    sender = sub.add_parser(
        "sender",
        help="run a channel sender (consumes commands, reports outcomes)",
        description="Deliver the commands of one channel and publish each outcome "
        "(delivered, bounced with a reason) to the events topic. Its own consumer group.",
    )
    sender_sub = sender.add_subparsers(dest="sender_kind", required=True, metavar="KIND")
    webhook = sender_sub.add_parser(
        "webhook",
        help="POST each command as signed JSON to a URL",
        description="POST each command as JSON, signed with HMAC-SHA256 "
        "(SME_SENDER_WEBHOOK_SECRET): 2xx delivered, 4xx bounced, 5xx and timeouts retried.",
    )
    webhook.add_argument("--channel", required=True, choices=[c.value for c in Channel])
    webhook.add_argument(
        "--url", help="the receiver (default: the channel's entry of SME_SENDER_WEBHOOK_URLS)"
    )
    smtp = sender_sub.add_parser(
        "smtp",
        help="render each email command and send it through an SMTP server",
        description="Render the command's template (<id>.subject.txt, <id>.html, <id>.txt) "
        "with its data and send it to the address in the profile attribute "
        "SME_SENDER_SMTP_ADDRESS_ATTRIBUTE: accepted delivered, 5xx bounced, 4xx retried.",
    )
    smtp.add_argument(
        "--templates",
        type=Path,
        help="templates directory (default: SME_SENDER_SMTP_TEMPLATES_DIR)",
    )
    schemas = sub.add_parser(
        "schemas",
        help="write the JSON Schemas of the message contracts",
        description="Generate schemas/<name>.schema.json from the pydantic models, "
        "schemas/openapi.json (HTTP API) and schemas/asyncapi.yaml (Kafka topics).",
    )
    schemas.add_argument(
        "--out", type=Path, default=Path("schemas"), help="output directory (default: schemas)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "schemas":
        run_schemas(args.out)
        return 0
    if args.command == "simulate":
        from sme.simulator.cli import run as run_simulate

        return run_simulate(args)
    if args.command == "evaluate":
        from sme.evaluate import run as run_evaluate

        return run_evaluate(args)
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"sme: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    try:
        if args.command == "report":
            return run_report(settings, args)
        if args.command == "sql":
            return run_sql(settings, args)
        if args.command == "keys":
            return run_keys_create(settings, args)
        if args.command == "configs":
            return run_configs_apply(settings, args.paths)
        if args.command == "sender":
            return run_sender(settings, args)
        if args.command == "demo":
            from sme.demo.cli import run as run_demo

            return run_demo(settings, args)
        {"engine": run_engine, "gateway": run_gateway, "topics": run_topics}[args.command](settings)
    except ValidationError as exc:
        print(f"sme: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except SmeError as exc:
        print(f"sme: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
