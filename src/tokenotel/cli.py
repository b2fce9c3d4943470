"""The ``tokenotel`` command: serve, query, fingerprint, migrate, demo."""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from tokenotel import __version__
from tokenotel.config import Settings, load_settings, setting_help
from tokenotel.errors import TokenotelError
from tokenotel.mapping.fingerprint import load_key
from tokenotel.model import Outcome
from tokenotel.query.output import Format, write_events
from tokenotel.query.search import EventFilter, search
from tokenotel.query.timeparse import parse_time
from tokenotel.store.client import Store
from tokenotel.store.cluster import apply_cluster, cluster_statements

app = typer.Typer(
    name="tokenotel",
    help="One audit trail for every API token: OTLP logs in, token events in ClickHouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _flag(setting: str, *names: str) -> Any:
    """The option of a setting: its help (meaning, environment variable, default) comes from
    the settings, and its default (None: not given) lets the environment and file decide."""
    return typer.Option(*names, help=setting_help(setting), show_default=False)


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", envvar="TOKENOTEL_CONFIG", help="YAML file with any of the settings."),
]
DataDirOpt = Annotated[Path | None, _flag("data_dir", "--data-dir")]
UrlOpt = Annotated[
    str | None,
    _flag("clickhouse_url", "--clickhouse-url"),
]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except TokenotelError as e:
        _fail(str(e))


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]tokenotel:[/bold red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _open_store(settings: Settings, must_exist: bool = True) -> Store:
    if must_exist and settings.server is None and not settings.data_dir.is_dir():
        _fail(
            f"no tokenotel data in {settings.data_dir}: run `tokenotel serve --data-dir "
            f"{settings.data_dir}` first, or point --data-dir at its data directory"
        )
    store = Store(settings.store_options)
    try:
        store.connect()
    except TokenotelError as e:
        _fail(str(e))
    return store


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"tokenotel {__version__}")
        raise typer.Exit()


@app.command()
def serve(
    config: ConfigOpt = None,
    grpc_listen: Annotated[str | None, _flag("grpc_listen")] = None,
    http_listen: Annotated[str | None, _flag("http_listen")] = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    max_request_bytes: Annotated[int | None, _flag("max_request_bytes")] = None,
    log_level: Annotated[str | None, _flag("log_level")] = None,
) -> None:
    """Receive OTLP logs (gRPC and HTTP) and store every token event."""
    from tokenotel.service import Service

    settings = _settings(
        config,
        grpc_listen=grpc_listen,
        http_listen=http_listen,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        max_request_bytes=max_request_bytes,
        log_level=log_level,
    )
    _logging(settings.log_level)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Service(settings).run_until(stop)

    try:
        asyncio.run(run())
    except (TokenotelError, OSError) as e:
        _fail(str(e), code=1)


@app.command()
def query(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    token: Annotated[
        list[str] | None, typer.Option("--token", help="Token id or fingerprint (repeatable).")
    ] = None,
    principal: Annotated[str | None, typer.Option(help="Principal (user.id).")] = None,
    ip: Annotated[str | None, typer.Option(help="Client IP or CIDR range, IPv4 or IPv6.")] = None,
    event: Annotated[
        list[str] | None,
        typer.Option("--event", help="Event name, e.g. token.auth_failed (repeatable)."),
    ] = None,
    outcome: Annotated[Outcome | None, typer.Option(help="success, failure or unknown.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From: ISO 8601, epoch seconds, or relative (30m, 24h, 7d).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Until: same forms as --since.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most events to return.")] = 1000,
    fmt: Annotated[
        Format, typer.Option("--format", help="table, json (one object per line) or csv.")
    ] = Format.TABLE,
) -> None:
    """Search token events in the store."""
    settings = _settings(config, data_dir=data_dir, clickhouse_url=clickhouse_url)
    try:
        event_filter = EventFilter(
            tokens=token or [],
            principal=principal,
            ip=ip,
            events=event or [],
            outcome=outcome,
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            limit=limit,
        )
        event_filter.where()  # validates the IP range before opening the store
    except ValueError as e:
        _fail(str(e))
    store = _open_store(settings)
    try:
        write_events(search(store, event_filter), fmt)
    except TokenotelError as e:
        _fail(str(e), code=1)
    finally:
        store.close()


@app.command()
def fingerprint(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    key_file: Annotated[
        Path | None,
        _flag("fingerprint_key_file", "--key-file"),
    ] = None,
) -> None:
    """Print the fingerprint of a token read from standard input (never from the command line)."""
    settings = _settings(config, data_dir=data_dir, fingerprint_key_file=key_file)
    tty = sys.stdin.isatty()
    secret = (getpass.getpass("token (input hidden): ") if tty else sys.stdin.read()).strip("\r\n")
    if not secret:
        _fail(
            "no token on standard input: pipe it in, e.g. `pass show my-token | tokenotel "
            "fingerprint`"
        )
    try:
        fingerprinter = load_key(settings.fingerprint_key_file, settings.data_dir, create=False)
    except TokenotelError as e:
        _fail(str(e))
    typer.echo(fingerprinter(secret))


@app.command()
def migrate(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    cluster: Annotated[str | None, _flag("cluster")] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="With --cluster: print the DDL instead of running it.")
    ] = False,
) -> None:
    """Create or upgrade the schema (serve also does it at start, except in cluster mode).

    With --cluster: ON CLUSTER, with Replicated and Distributed tables."""
    settings = _settings(config, data_dir=data_dir, clickhouse_url=clickhouse_url, cluster=cluster)
    _logging("warning")
    if settings.cluster is not None:
        _migrate_cluster(settings, print_only)
        return
    if print_only:
        _fail("--print goes with --cluster")
    store = _open_store(settings, must_exist=False)
    store.close()
    for m in store.applied_migrations:
        typer.echo(f"applied {m.version:04d}_{m.name}")
    typer.echo(f"schema up to date in {store.target}")


def _migrate_cluster(settings: Settings, print_only: bool) -> None:
    assert settings.cluster is not None
    statements = cluster_statements(settings.cluster, settings.database, settings.retention_days)
    if print_only:
        typer.echo(";\n\n".join(statements) + ";")
        return
    if settings.server is None:
        _fail("cluster mode needs a ClickHouse server: set --clickhouse-url (or use --print)")
    try:
        ran, backfills = apply_cluster(settings.server, settings.cluster, statements)
    except TokenotelError as e:
        _fail(str(e), code=1)
    typer.echo(f"ran {ran} statements on cluster {settings.cluster} ({settings.server!r})")
    if backfills:
        typer.echo(
            f"{len(backfills)} back-fill statements fill rollups from events already stored; on "
            "a cluster that holds events, run them on one replica of each shard (see --print)"
        )


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps its data (emptied first).")
    ] = Path("tokenotel-demo"),
    events: Annotated[int, typer.Option(min=200, help="Roughly how many events to send.")] = 3000,
) -> None:
    """Run the service in-process, send realistic traffic (with an attack) and summarise it."""
    from tokenotel.demo.run import run_demo

    _logging("warning")
    try:
        run_demo(data_dir, events)
    except TokenotelError as e:
        _fail(str(e), code=1)


def main() -> None:
    app()
