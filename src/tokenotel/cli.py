"""The ``tokenotel`` command: serve; query, tokens, timeline, summary, tail; fingerprint;
report; verify; auth add|list|revoke; migrate; import; demo."""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from tokenotel import __version__
from tokenotel.api.readers import (
    Reader,
    ServiceReader,
    StoreReader,
    read_credential_file,
    running_service,
)
from tokenotel.config import Settings, load_settings, setting_help
from tokenotel.detect import Detector, load_rules, shipped_rules
from tokenotel.detect.replay import replay
from tokenotel.errors import PermanentError, TokenotelError
from tokenotel.integrity.signing import VerifierKey, load_signing_key, public_path
from tokenotel.integrity.verify import (
    Finding,
    Kind,
    Status,
    Summary,
    Trust,
    Verification,
    compare_published,
)
from tokenotel.mapping.fingerprint import github_hashed_token, load_key, load_previous_keys
from tokenotel.model import Outcome, TokenStatus
from tokenotel.query.output import (
    Format,
    write_alerts,
    write_credentials,
    write_events,
    write_summary,
    write_timeline,
    write_tokens,
)
from tokenotel.query.search import EventFilter
from tokenotel.query.timeparse import parse_time
from tokenotel.query.tokens import TokenFilter
from tokenotel.report.build import SECTIONS, Integrity
from tokenotel.report.model import Policy, load_policy, period_name, report_period
from tokenotel.report.output import Trail
from tokenotel.report.render import ReportFormat
from tokenotel.report.seal import check as check_report
from tokenotel.security.credentials import (
    Role,
    add_credential,
    read_credentials,
    revoke_credential,
)
from tokenotel.security.tls import channel_credentials
from tokenotel.store.client import Store
from tokenotel.store.cluster import apply_cluster, cluster_statements
from tokenotel.store.grants import grant_script, script_text
from tokenotel.store.ledger import JOURNAL_FILE, unsealed_stamps

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
CredentialsFileOpt = Annotated[Path | None, _flag("credentials_file", "--credentials-file")]


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


def _open_store(settings: Settings, must_exist: bool = True, reading: bool = True) -> Store:
    """The store of the settings; ``reading``: for the reading commands, which leave the
    retention as they find it (it is serve's and migrate's setting)."""
    if must_exist and settings.clickhouse_server is None and not settings.data_dir.is_dir():
        _fail(
            f"no tokenotel data in {settings.data_dir}: run `tokenotel serve --data-dir "
            f"{settings.data_dir}` first, or point --data-dir at its data directory"
        )
    options = settings.store_options
    store = Store(replace(options, retention_days=None) if reading else options)
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
    api_listen: Annotated[str | None, _flag("api_listen")] = None,
    clickhouse_listen: Annotated[str | None, _flag("clickhouse_listen")] = None,
    clickhouse_password_file: Annotated[Path | None, _flag("clickhouse_password_file")] = None,
    tls_cert_file: Annotated[Path | None, _flag("tls_cert_file")] = None,
    tls_key_file: Annotated[Path | None, _flag("tls_key_file")] = None,
    tls_client_ca_file: Annotated[Path | None, _flag("tls_client_ca_file")] = None,
    insecure_listen: Annotated[bool, _flag("insecure_listen", "--insecure-listen")] = False,
    auth: Annotated[bool | None, _flag("auth", "--auth/--no-auth")] = None,
    credentials_file: CredentialsFileOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    max_request_bytes: Annotated[int | None, _flag("max_request_bytes")] = None,
    checkpoint_dir: Annotated[Path | None, _flag("checkpoint_dir")] = None,
    detection: Annotated[bool | None, _flag("detection", "--detection/--no-detection")] = None,
    detection_rules_files: Annotated[str | None, _flag("detection_rules_files")] = None,
    alert_webhook_urls: Annotated[str | None, _flag("alert_webhook_urls")] = None,
    alert_otlp_endpoint: Annotated[str | None, _flag("alert_otlp_endpoint")] = None,
    grafana_url: Annotated[str | None, _flag("grafana_url")] = None,
    log_level: Annotated[str | None, _flag("log_level")] = None,
) -> None:
    """Receive OTLP logs (gRPC and HTTP), store every token event, run the detection rules on
    it, and answer the query API (and, when asked, the ClickHouse HTTP interface for
    Grafana)."""
    from tokenotel.service import Service

    settings = _settings(
        config,
        grpc_listen=grpc_listen,
        http_listen=http_listen,
        api_listen=api_listen,
        clickhouse_listen=clickhouse_listen,
        clickhouse_password_file=clickhouse_password_file,
        tls_cert_file=tls_cert_file,
        tls_key_file=tls_key_file,
        tls_client_ca_file=tls_client_ca_file,
        insecure_listen=True if insecure_listen else None,  # not given: environment, file
        auth=auth,
        credentials_file=credentials_file,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        max_request_bytes=max_request_bytes,
        checkpoint_dir=checkpoint_dir,
        detection=detection,
        detection_rules_files=detection_rules_files,
        alert_webhook_urls=alert_webhook_urls,
        alert_otlp_endpoint=alert_otlp_endpoint,
        grafana_url=grafana_url,
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


ServerOpt = Annotated[str | None, _flag("server", "--server")]
ServerCaOpt = Annotated[Path | None, _flag("server_ca_file", "--server-ca-file")]
ClientCertOpt = Annotated[Path | None, _flag("client_cert_file", "--client-cert-file")]
ClientKeyOpt = Annotated[Path | None, _flag("client_key_file", "--client-key-file")]
CredentialOpt = Annotated[Path | None, _flag("server_credential_file", "--server-credential-file")]
TokenOpt = Annotated[
    list[str] | None, typer.Option("--token", help="Token id or fingerprint (repeatable).")
]
PrincipalOpt = Annotated[str | None, typer.Option(help="Principal (user.id).")]
IpOpt = Annotated[str | None, typer.Option(help="Client IP or CIDR range, IPv4 or IPv6.")]
EventOpt = Annotated[
    list[str] | None,
    typer.Option("--event", help="Event name, e.g. token.auth_failed (repeatable)."),
]
OutcomeOpt = Annotated[Outcome | None, typer.Option(help="success, failure or unknown.")]
StatusOpt = Annotated[
    list[TokenStatus] | None,
    typer.Option(
        "--token-status",
        help="The token's status when the event arrived: active, disabled, revoked, rotated, "
        "expired (repeatable).",
    ),
]
SinceOpt = Annotated[
    str | None, typer.Option(help="From: ISO 8601, epoch seconds, or relative (30m, 24h, 7d).")
]
UntilOpt = Annotated[str | None, typer.Option(help="Until: same forms as --since.")]
FormatOpt = Annotated[
    Format, typer.Option("--format", help="table, json (one object per line) or csv.")
]


def _client_tls(
    server_ca_file: Path | None, client_cert_file: Path | None, client_key_file: Path | None
) -> dict[str, Path | None]:
    return {
        "server_ca_file": server_ca_file,
        "client_cert_file": client_cert_file,
        "client_key_file": client_key_file,
    }


def _reader(settings: Settings) -> Reader:
    """The service's query API when one is given, or runs on the data directory; else the
    store itself (a stopped data directory, or a ClickHouse server)."""
    address = _service_address(settings)
    if address is not None:
        return _service_reader(settings, address)
    return StoreReader(_open_store(settings))


def _service_address(settings: Settings) -> str | None:
    """The query API to read through: the one given, else that of the service that holds the
    data directory, if one runs."""
    address = settings.server
    if address is None and settings.clickhouse_url is None:
        found = running_service(settings.data_dir)
        if found is not None and found.tls and settings.server_ca_file is None:
            _fail(
                f"the service that holds {settings.data_dir} serves its query API over TLS: "
                "set --server-ca-file (server_ca_file) to the CA that signed its certificate"
            )
        address = found.address if found is not None else None
    return address


def _service_reader(settings: Settings, address: str) -> ServiceReader:
    """The query API at ``address``: sending the credential of server_credential_file when it
    is set, over TLS when server_ca_file is set."""
    credential, tls = None, None
    try:
        if settings.server_credential_file is not None:
            credential = read_credential_file(settings.server_credential_file)
        if settings.server_ca_file is not None:
            tls = channel_credentials(
                settings.server_ca_file, settings.client_cert_file, settings.client_key_file
            )
    except TokenotelError as e:
        _fail(str(e))
    return ServiceReader(address, credential, tls)


def _read(settings: Settings, read: Callable[[Reader], None]) -> None:
    reader = _reader(settings)
    try:
        read(reader)
    except TokenotelError as e:
        _fail(str(e), code=2 if isinstance(e, PermanentError) else 1)
    finally:
        reader.close()


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        _fail(f"{option}: {e}")


def _event_filter(
    token: list[str] | None,
    principal: str | None,
    ip: str | None,
    event: list[str] | None,
    outcome: Outcome | None,
    token_status: list[TokenStatus] | None,
    since: str | None,
    until: str | None,
) -> EventFilter:
    event_filter = EventFilter(
        tokens=token or [],
        principal=principal,
        ip=ip,
        events=event or [],
        outcome=outcome,
        statuses=token_status or [],
        since=_when(since, "--since"),
        until=_when(until, "--until"),
    )
    try:
        event_filter.where()  # the address or range, before anything is opened
    except TokenotelError as e:
        _fail(str(e))
    return event_filter


@app.command()
def query(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    server: ServerOpt = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    token: TokenOpt = None,
    principal: PrincipalOpt = None,
    ip: IpOpt = None,
    event: EventOpt = None,
    outcome: OutcomeOpt = None,
    token_status: StatusOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Most events to return.")] = 1000,
    fmt: FormatOpt = Format.TABLE,
    secret_stdin: Annotated[
        bool,
        typer.Option(
            "--secret-stdin",
            help="Also search for the token whose secret is on standard input (never the "
            "command line), under the current and every previous fingerprint key.",
        ),
    ] = False,
    previous_key_file: PreviousKeysOpt = None,
) -> None:
    """Search token events: in the running service, or in a stopped data directory."""
    settings = _settings(
        config,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        server=server,
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
        previous_fingerprint_key_files=previous_key_file,
        server_credential_file=server_credential_file,
    )
    event_filter = _event_filter(token, principal, ip, event, outcome, token_status, since, until)
    secret = _read_secret() if secret_stdin else None

    def read(reader: Reader) -> None:
        if secret is not None:
            service = reader if isinstance(reader, ServiceReader) else None
            event_filter.tokens += _fingerprints(settings, secret, service)
            event_filter.tokens.append(github_hashed_token(secret))
        write_events(reader.events(event_filter, limit), fmt)

    _read(settings, read)


@app.command()
def tokens(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    server: ServerOpt = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    status: Annotated[
        TokenStatus | None,
        typer.Option(help="active, disabled, revoked, rotated or expired (as of now)."),
    ] = None,
    principal: Annotated[str | None, typer.Option(help="Owner (user.id).")] = None,
    scope: Annotated[str | None, typer.Option(help="Tokens that carry this scope.")] = None,
    expires_within: Annotated[
        str | None, typer.Option(help="Expiring within this from now: 30m, 24h, 7d ...")
    ] = None,
    unused_for: Annotated[
        str | None, typer.Option(help="Not used successfully for at least this: 90d ...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most tokens to return.")] = 1000,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """The token inventory: the latest state of every token."""
    settings = _settings(
        config,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        server=server,
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
        server_credential_file=server_credential_file,
    )
    token_filter = TokenFilter(
        status=status,
        principal=principal,
        scope=scope,
        expires_within=_duration(expires_within, "--expires-within"),
        unused_for=_duration(unused_for, "--unused-for"),
    )
    _read(settings, lambda reader: write_tokens(reader.tokens(token_filter, limit), fmt))


@app.command()
def timeline(
    token: Annotated[str, typer.Argument(help="Token id or fingerprint.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    server: ServerOpt = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Most events to show.")] = 1000,
    fmt: Annotated[
        Format, typer.Option("--format", help="table, json (one document) or csv (the events).")
    ] = Format.TABLE,
) -> None:
    """One token: its state, lifecycle, scopes over time, addresses and events."""
    settings = _settings(
        config,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        server=server,
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
        server_credential_file=server_credential_file,
    )
    _read(settings, lambda reader: write_timeline(reader.timeline(token, limit), fmt))


@app.command()
def summary(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    server: ServerOpt = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    top: Annotated[int, typer.Option(min=1, max=100, help="Rows of each top list.")] = 5,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help="table or json (one document); csv, no shape for its lists, gives json.",
        ),
    ] = Format.TABLE,
) -> None:
    """What happened in a time window: events, top tokens and failing addresses, misuse."""
    settings = _settings(
        config,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        server=server,
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
        server_credential_file=server_credential_file,
    )
    window = _when(since, "--since"), _when(until, "--until")
    _read(settings, lambda reader: write_summary(reader.summary(*window, top), fmt))


@app.command()
def tail(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    server: ServerOpt = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    token: TokenOpt = None,
    principal: PrincipalOpt = None,
    ip: IpOpt = None,
    event: EventOpt = None,
    outcome: OutcomeOpt = None,
    token_status: StatusOpt = None,
    cursor: Annotated[
        str | None,
        typer.Option(help="Go on from here (printed when tail stops); default: from now."),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help="table, json (one object per line) or csv (a header before each batch).",
        ),
    ] = Format.JSON,
) -> None:
    """Events as they are committed, until Ctrl-C; a stopped data directory gives what was
    committed after --cursor."""
    settings = _settings(
        config,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        server=server,
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
        server_credential_file=server_credential_file,
    )
    event_filter = _event_filter(token, principal, ip, event, outcome, token_status, None, None)
    last = [cursor or ""]

    def follow(reader: Reader) -> None:
        try:
            for events, after in reader.tail(event_filter, cursor):
                if events:
                    write_events(events, fmt)
                    sys.stdout.flush()
                last[0] = after
        except KeyboardInterrupt:
            pass
        err.print(f"to go on from here: --cursor {last[0]}", highlight=False, soft_wrap=True)

    _read(settings, follow)


@app.command()
def detect(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    since: Annotated[
        str, typer.Option(help="From: ISO 8601, epoch seconds, or relative (30m, 24h, 7d).")
    ] = "30d",
    until: UntilOpt = None,
    rules: Annotated[
        list[Path] | None,
        typer.Option(
            "--rules",
            help="A YAML file of rules (docs/detection.md) instead of the shipped ones "
            "(repeatable).",
        ),
    ] = None,
    fmt: FormatOpt = Format.TABLE,
) -> None:
    """Replays stored events through the detection rules, in event-time order, and prints
    the alerts they would have raised: to tune a rule before turning it on."""
    settings = _settings(config, data_dir=data_dir, clickhouse_url=clickhouse_url)
    now = datetime.now(UTC)
    start, end = _when(since, "--since") or now, _when(until, "--until") or now
    if start >= end:
        _fail(
            f"--since ({start:%Y-%m-%d %H:%M:%S}Z) must be before "
            f"--until ({end:%Y-%m-%d %H:%M:%S}Z)"
        )
    try:
        chosen = [rule for path in rules for rule in load_rules(path)] if rules else None
    except TokenotelError as e:
        _fail(str(e))
    detector = Detector(chosen if chosen is not None else shipped_rules())
    if settings.clickhouse_url is None and running_service(settings.data_dir) is not None:
        _fail(
            f"the data directory {settings.data_dir} is in use by a running `tokenotel serve`: "
            "`tokenotel detect` reads a stopped data directory or a ClickHouse server "
            "(--clickhouse-url); stop the service first"
        )
    store = _open_store(settings)
    with Progress(
        TextColumn("replaying stored events"), BarColumn(), TextColumn("{task.description}"),
        console=err, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("", total=None)

        def read_up_to(first: datetime, reached: datetime) -> None:
            done = (reached - first).total_seconds()
            total = (end - first).total_seconds()
            bar.update(task, completed=done, total=total, description=f"{reached:%Y-%m-%d %H:%M}")

        try:
            found = replay(detector, store, start, end, read_up_to)
            alerts = [alert.as_row() for alert in found]
        except TokenotelError as e:
            _fail(str(e), code=2 if isinstance(e, PermanentError) else 1)
        finally:
            store.close()
    write_alerts(alerts, fmt)


def _duration(text: str | None, option: str) -> timedelta | None:
    if text is None:
        return None
    now = datetime.now(UTC)
    try:
        return now - parse_time(text, now)
    except ValueError as e:
        _fail(f"{option}: {e}")


PreviousKeysOpt = Annotated[
    list[Path] | None,
    _flag("previous_fingerprint_key_files", "--previous-key-file"),
]


@app.command()
def fingerprint(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    server: ServerOpt = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    key_file: Annotated[
        Path | None,
        _flag("fingerprint_key_file", "--key-file"),
    ] = None,
    previous_key_file: PreviousKeysOpt = None,
) -> None:
    """Print the fingerprint of a token read from standard input (never from the command line),
    with the key in the data directory, or asked of a running service (--server); then, one a
    line, its fingerprint under each key used before a rotation; last, the hash GitHub's audit
    log keeps of it (hashed_token: base64 of its SHA-256)."""
    settings = _settings(
        config,
        data_dir=data_dir,
        fingerprint_key_file=key_file,
        previous_fingerprint_key_files=previous_key_file,
        server=server,
        server_credential_file=server_credential_file,
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
    )
    secret = _read_secret()
    if settings.server is not None:  # the service's keys: never on this machine
        service = _service_reader(settings, settings.server)
        try:
            fingerprints = _fingerprints(settings, secret, service)
        finally:
            service.close()
    else:
        fingerprints = _fingerprints(settings, secret, None)
    typer.echo("\n".join([*fingerprints, github_hashed_token(secret)]))


def _read_secret() -> str:
    """A token's secret from standard input (hidden when typed)."""
    tty = sys.stdin.isatty()
    secret = (getpass.getpass("token (input hidden): ") if tty else sys.stdin.read()).strip("\r\n")
    if not secret:
        _fail(
            "no token on standard input: pipe it in, e.g. `pass show my-token | tokenotel "
            "fingerprint`"
        )
    return secret


def _fingerprints(settings: Settings, secret: str, service: ServiceReader | None) -> list[str]:
    """The secret's fingerprint under the current key, then under each previous key: asked of
    ``service`` when reading through one (its keys stay there), else from the key files."""
    try:
        if service is not None:
            return service.fingerprints(secret)
        current = load_key(settings.fingerprint_key_file, settings.data_dir, create=False)
        previous = load_previous_keys(settings.previous_fingerprint_key_files)
    except TokenotelError as e:
        _fail(str(e), code=2 if isinstance(e, PermanentError) else 1)
    return [key(secret) for key in (current, *previous)]


PasswordFileOpt = typer.Option(
    help="With --print-grants: create this user, with the password in this file (its first "
    "line; printed only as a salted SHA-256)."
)


auth_app = typer.Typer(
    help="tokenotel's own credentials (roles ingest, read, admin), kept as hashes in the "
    "credentials file; a running service sees each change within a second.",
    no_args_is_help=True,
)
app.add_typer(auth_app, name="auth")


def _auth_settings(
    config: Path | None, data_dir: Path | None, credentials_file: Path | None
) -> Settings:
    return _settings(config, data_dir=data_dir, credentials_file=credentials_file)


def _actor() -> str:
    """Who runs the command (the system user), noted as who created or revoked a credential."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


@auth_app.command("add")
def auth_add(
    role: Annotated[
        Role,
        typer.Option(
            help="ingest (send OTLP logs), read (the query API) or admin (both, and the "
            "administrative calls: verify, checkpoints, consistency proofs)."
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(help="Who or what holds it (e.g. gateway-eu-1); default: <role>-<id>."),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    credentials_file: CredentialsFileOpt = None,
) -> None:
    """Create a credential and print it on standard output: the only time it is ever shown
    (the file keeps only its hash)."""
    settings = _auth_settings(config, data_dir, credentials_file)
    try:
        record, credential = add_credential(settings.credentials_path, role, name, actor=_actor())
    except TokenotelError as e:
        _fail(str(e))
    typer.echo(credential)
    err.print(
        f"credential {record.id} ({record.name}, role {record.role}) added to "
        f"{settings.credentials_path}. It is shown only this once: store it now (e.g. in the "
        "file your client reads); `tokenotel auth revoke` is the only way to end it.",
        highlight=False,
        soft_wrap=True,
    )


@auth_app.command("list")
def auth_list(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    credentials_file: CredentialsFileOpt = None,
    fmt: Annotated[
        Format, typer.Option("--format", help="table, json (one object per line) or csv.")
    ] = Format.TABLE,
) -> None:
    """The credentials: id, name, role, when created and revoked, by whom (never a secret or
    hash)."""
    settings = _auth_settings(config, data_dir, credentials_file)
    try:
        credentials = read_credentials(settings.credentials_path)
    except TokenotelError as e:
        _fail(str(e))
    rows = []
    for credential in credentials:
        shown = credential.to_json()
        del shown["sha256"]  # not a secret, but nothing a reader needs
        rows.append(shown)
    write_credentials(rows, fmt)


@auth_app.command("revoke")
def auth_revoke(
    credential_id: Annotated[str, typer.Argument(metavar="ID", help="The credential's id.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    credentials_file: CredentialsFileOpt = None,
) -> None:
    """Revoke a credential: a running service refuses it from its next request on."""
    settings = _auth_settings(config, data_dir, credentials_file)
    try:
        record, now = revoke_credential(settings.credentials_path, credential_id, actor=_actor())
    except TokenotelError as e:
        _fail(str(e))
    assert record.revoked is not None
    when = record.revoked.isoformat(timespec="seconds")
    if now:
        typer.echo(f"revoked credential {record.id} ({record.name}, role {record.role})")
    else:
        typer.echo(f"credential {record.id} ({record.name}) was already revoked at {when}")


@app.command()
def verify(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    server: ServerOpt = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only checkpoints and inserts from then on (ISO 8601, 30m, 7d ...)."),
    ] = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(
            "--checkpoints",
            help="Directory of published checkpoints to check the store against (default: "
            "checkpoint_dir).",
        ),
    ] = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            help="File of a trusted public key (the .pub beside the signing key; repeatable, "
            "for rotated keys). Default: the one on this machine.",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Print every insert, the valid ones too.")
    ] = False,
    report_file: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Check a report file made by `tokenotel report` instead: unchanged since it was "
            "sealed, and signed by a trusted key.",
        ),
    ] = None,
) -> None:
    """Check the trail against its ledger and signed checkpoints, interval by interval: valid
    or INVALID with the reason, then a summary; or, with --report, check a report's seal. Exit
    status 0 when everything checked is valid, 1 when something is INVALID, 2 when it could not
    check."""
    settings = _settings(
        config,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        server=server,
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
        server_credential_file=server_credential_file,
    )
    if report_file is not None:
        raise typer.Exit(0 if _verify_report(report_file, settings, public_key) else 1)
    trust = Trust(_trusted_keys(settings, public_key), checkpoints or settings.checkpoint_dir)
    if trust.checkpoint_dir is not None and not trust.checkpoint_dir.is_dir():
        _fail(f"--checkpoints: {trust.checkpoint_dir} is not a directory")
    moment = _when(since, "--since")
    address = _service_address(settings)
    try:
        if address is not None:
            ok = _verify_service(_service_reader(settings, address), trust, moment, verbose)
        else:
            since_ms = int(moment.timestamp() * 1000) if moment else 0
            ok = _verify_store(settings, trust, since_ms, verbose)
    except TokenotelError as e:  # 2, not 1: nothing was found INVALID, nothing was checked
        _fail(str(e), code=2)
    raise typer.Exit(0 if ok else 1)


def _trusted_keys(settings: Settings, files: list[Path] | None) -> list[VerifierKey]:
    """The public keys given, else the one beside the signing key on this machine."""
    if not files:
        local = public_path(settings.signing_key_path)
        if not local.is_file() and not settings.signing_key_path.is_file():
            _fail(
                f"no public key to verify with: give --public-key FILE (the {local.name} written "
                "beside the signing key when it was created)"
            )
        err.print(
            f"trusting the public key on this machine ({local}); give --public-key with a copy "
            "kept elsewhere to rule out a replaced key",
            highlight=False,
            soft_wrap=True,
        )
        if not local.is_file():
            try:
                return [load_signing_key(settings.signing_key_path, "", create=False).verifier]
            except TokenotelError as e:
                _fail(str(e))
        files = [local]
    keys = []
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as e:
            _fail(f"--public-key: cannot read {path}: {e}")
        for line in lines:
            try:
                keys.append(VerifierKey.parse(line))
            except ValueError as e:
                _fail(f"--public-key: {path} holds a line that is {e}")
    return keys


def _print(finding: Finding, verbose: bool) -> None:
    """Checkpoints close each interval; inserts are listed when not valid (or asked for)."""
    if verbose or finding.kind is not Kind.INSERT or finding.status is not Status.VALID:
        typer.echo(str(finding))


def _store_state(settings: Settings) -> tuple[frozenset[int], bool]:
    """What a verification of the store must know: the stamps a stopped service had not
    sealed yet (its journal), and whether a service may be writing (a server may have one
    writing to it right now)."""
    if settings.clickhouse_url is not None:
        return frozenset(), True
    return frozenset(unsealed_stamps(settings.data_dir / JOURNAL_FILE)), False


def _verify_store(settings: Settings, trust: Trust, since_ms: int, verbose: bool) -> bool:
    """Verifies a stopped data directory, or a ClickHouse server's database."""
    pending, live = _store_state(settings)
    store = _open_store(settings)
    try:
        verification = Verification(
            store,
            trust.keys,
            trust.published(),
            since_ms=since_ms,
            live=live,
            pending_stamps=pending,
        )
        for finding in verification.run():
            _print(finding, verbose)
    finally:
        store.close()
    _results(verification.summary.lines())
    return verification.summary.ok


def _verify_service(
    reader: ServiceReader, trust: Trust, since: datetime | None, verbose: bool
) -> bool:
    """The service verifies its store; this machine checks the service's checkpoints with its
    own keys, and its own copies of published checkpoints against the service's tree."""
    summary = Summary()
    try:
        for item in reader.verify(since):
            if isinstance(item, Finding):
                _print(item, verbose)
            else:
                summary = item
        notes = reader.checkpoints()
        published = trust.published()
        local: list[Finding] = []
        for finding in compare_published(notes, published, trust.keys, reader.consistency_proof):
            typer.echo(str(finding))
            local.append(finding)
    finally:
        reader.close()
    unsigned = sum(1 for f in local if f.kind is Kind.SERVICE)
    consistent = sum(1 for f in local if f.status is Status.VALID)
    _results(
        [
            *summary.lines(),
            f"{len(notes) - unsigned}/{len(notes)} of the service's checkpoints signed by a "
            "trusted key (checked here)",
            f"{consistent}/{len(published)} published checkpoints consistent with the service's "
            "tree (checked here)",
        ]
    )
    return summary.ok and all(f.status is not Status.INVALID for f in local)


def _results(lines: list[str]) -> None:
    typer.echo("\nResults:")
    for line in lines:
        typer.echo(line)


def _verify_report(path: Path, settings: Settings, public_key: list[Path] | None) -> bool:
    """Checks a report's seal: its SHA-256, and its signature with the trusted keys."""
    try:
        content = path.read_bytes()
    except OSError as e:
        _fail(f"--report: cannot read {path}: {e}")
    local = public_path(settings.signing_key_path)
    has_key = public_key or local.is_file() or settings.signing_key_path.is_file()
    keys = _trusted_keys(settings, public_key) if has_key else []
    try:
        checked = check_report(content, keys)
    except TokenotelError as e:
        _fail(f"--report: {path}: {e}")
    typer.echo(checked.statement.rstrip("\n"))
    typer.echo("")
    if checked.intact:
        typer.echo(f"{path}: unchanged: its SHA-256 is the one sealed in it")
    else:
        typer.echo(f"{path}: INVALID: changed after it was sealed (its SHA-256 differs)")
    if checked.signer is not None:
        typer.echo(f"signed by {checked.signer} (trusted)")
    elif checked.signed:
        typer.echo("INVALID: signed, but not by a trusted key (give --public-key)")
    else:
        typer.echo("not signed: the trail had no signing key, so only an unchanged file is shown")
    return checked.ok


ReportFormatOpt = Annotated[
    ReportFormat,
    typer.Option("--format", help="html (default; one self-contained file), pdf, json or csv."),
]


@app.command()
def report(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    server: ServerOpt = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    period: Annotated[
        str | None,
        typer.Option(help="2026-Q3, 2026-H2, 2026-07 or 2026 (default: the last quarter ended)."),
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    fmt: ReportFormatOpt = ReportFormat.HTML,
    policy: Annotated[
        Path | None,
        typer.Option(
            help="YAML file of the report policy (docs/report.md; default: its defaults)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write it (default: tokenotel-report-<period>.<format>).",
        ),
    ] = None,
) -> None:
    """The compliance report over a period: inventory, rotation, dormant and privileged tokens,
    revocation timeliness, failures and alerts, integrity and retention, as evidence for PCI
    DSS, SOC 2 and ISO 27001 (docs/report.md); sealed, and signed with the trail's signing key."""
    settings = _settings(
        config,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        server=server,
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
        server_credential_file=server_credential_file,
    )
    try:
        the_policy = load_policy(policy)
        bounds = report_period(
            period, _when(since, "--since"), _when(until, "--until"), datetime.now(UTC)
        )
    except TokenotelError as e:
        _fail(str(e))
    target = output or Path(f"tokenotel-report-{_file_period(*bounds)}.{fmt.value}")
    address = _service_address(settings)
    try:
        if address is not None:
            text = policy.read_text(encoding="utf-8") if policy else ""
            reader = _service_reader(settings, address)
            try:
                content = b"".join(reader.report(*bounds, fmt, text))
            finally:
                reader.close()
        else:
            content = _report_from_store(settings, bounds, the_policy, fmt)
    except TokenotelError as e:
        _fail(str(e), code=2 if isinstance(e, PermanentError) else 1)
    if str(target) == "-":
        sys.stdout.buffer.write(content)
        return
    target.write_bytes(content)
    err.print(f"wrote {target} ({len(content):,} bytes)", highlight=False)


def _report_from_store(
    settings: Settings, bounds: tuple[datetime, datetime], policy: Policy, fmt: ReportFormat
) -> bytes:
    """The report of a stopped data directory or a ClickHouse server, sealed with the signing
    key on this machine when there is one."""
    key = None
    if settings.signing_key_path.is_file():
        key = load_signing_key(settings.signing_key_path, "", create=False)
    else:
        err.print(
            f"no signing key in {settings.signing_key_path}: the report is sealed unsigned",
            highlight=False,
        )
    integrity = Integrity(None)
    if key is not None:
        pending, live = _store_state(settings)
        integrity = Integrity(Trust([key.verifier], settings.checkpoint_dir), live, pending)
    store = _open_store(settings)
    trail = Trail(store, settings.trail_name, integrity, settings.retention_days, key)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), console=err) as progress:
            task = progress.add_task("report", total=len(SECTIONS))

            def step(number: int, key: str) -> None:
                progress.update(task, completed=number - 1, description=f"section {number}: {key}")

            content = trail.report(*bounds, policy, fmt, step)
            progress.update(task, completed=len(SECTIONS), description="sealed")
    finally:
        store.close()
    return content


def _file_period(since: datetime, until: datetime) -> str:
    name = period_name(since, until)
    return name if " " not in name else f"{since:%Y%m%dT%H%M}-{until:%Y%m%dT%H%M}"


@app.command()
def migrate(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    cluster: Annotated[str | None, _flag("cluster")] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="With --cluster: print the DDL instead of running it.")
    ] = False,
    print_grants: Annotated[
        bool,
        typer.Option(
            "--print-grants",
            help="Print the roles (migrator, writer, reader) and users for a ClickHouse server "
            "instead of migrating (docs/least-privilege.md); ON CLUSTER with --cluster.",
        ),
    ] = False,
    migrator_password_file: Annotated[Path | None, PasswordFileOpt] = None,
    writer_password_file: Annotated[Path | None, PasswordFileOpt] = None,
    reader_password_file: Annotated[Path | None, PasswordFileOpt] = None,
) -> None:
    """Create or upgrade the schema (serve also does it at start where it may, except in
    cluster mode).

    With --cluster: ON CLUSTER, with Replicated and Distributed tables."""
    settings = _settings(config, data_dir=data_dir, clickhouse_url=clickhouse_url, cluster=cluster)
    _logging("warning")
    if print_grants:
        files = {
            "tokenotel_migrate": migrator_password_file,
            "tokenotel_serve": writer_password_file,
            "tokenotel_grafana": reader_password_file,
        }
        passwords = {user: _password(path) for user, path in files.items() if path is not None}
        database = settings.store_options.database
        typer.echo(script_text(grant_script(database, settings.cluster, passwords)), nl=False)
        return
    if settings.cluster is not None:
        _migrate_cluster(settings, print_only)
        return
    if print_only:
        _fail("--print goes with --cluster")
    store = _open_store(settings, must_exist=False, reading=False)
    store.close()
    for m in store.applied_migrations:
        typer.echo(f"applied {m.version:04d}_{m.name}")
    typer.echo(f"schema up to date in {store.target}")


def _password(path: Path) -> str:
    """The first line of a password file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        _fail(f"cannot read password file {path}: {e}; write the user's password into it")
    if not lines or not lines[0]:
        _fail(f"password file {path} is empty: write the user's password on its first line")
    return lines[0]


def _migrate_cluster(settings: Settings, print_only: bool) -> None:
    assert settings.cluster is not None
    statements = cluster_statements(settings.cluster, settings.database, settings.retention_days)
    if print_only:
        typer.echo(";\n\n".join(statements) + ";")
        return
    if settings.clickhouse_server is None:
        _fail("cluster mode needs a ClickHouse server: set --clickhouse-url (or use --print)")
    try:
        ran, backfills = apply_cluster(settings.clickhouse_server, settings.cluster, statements)
    except TokenotelError as e:
        _fail(str(e), code=1)
    server = settings.clickhouse_server
    typer.echo(f"ran {ran} statements on cluster {settings.cluster} ({server!r})")
    if backfills:
        typer.echo(
            f"{len(backfills)} back-fill statements fill rollups from events already stored; on "
            "a cluster that holds events, run them on one replica of each shard (see --print)"
        )


@app.command("import")
def import_(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Files, directories (read recursively) and globs (quoted; ** for any depth); "
            "gzip files (.gz) are read decompressed.",
            show_default=False,
        ),
    ],
    source: Annotated[
        str, typer.Option("--source", help="The source the files come from.", show_default=False)
    ],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    clickhouse_url: UrlOpt = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Send to a running tokenotel's OTLP/gRPC address (HOST:PORT, its grpc_listen) "
            "instead (default: the service that holds the data directory, else the data "
            "directory's store itself).",
            show_default=False,
        ),
    ] = None,
    server_ca_file: ServerCaOpt = None,
    client_cert_file: ClientCertOpt = None,
    client_key_file: ClientKeyOpt = None,
    server_credential_file: CredentialOpt = None,
    log_level: Annotated[str | None, _flag("log_level")] = None,
) -> None:
    """Import a source's records from files (history, backfill): the same mapping as the
    collector's live records; resumable after an interruption (run it again), and what was
    stored before is not stored again."""
    from tokenotel.history import cli_run
    from tokenotel.sources import SOURCES

    if source not in SOURCES:
        _fail(f"--source {source!r}: one of {', '.join(sorted(SOURCES))}")
    settings = _settings(
        config,
        data_dir=data_dir,
        clickhouse_url=clickhouse_url,
        server_credential_file=server_credential_file,
        log_level=log_level or "warning",
        **_client_tls(server_ca_file, client_cert_file, client_key_file),
    )
    _logging(settings.log_level)
    if server is None and settings.clickhouse_url is None:
        found = running_service(settings.data_dir)
        if found is not None:
            if found.otlp is None:
                _fail(
                    f"a service holds {settings.data_dir} but did not note its OTLP address: "
                    "give it with --server HOST:PORT"
                )
            if found.tls and settings.server_ca_file is None:
                _fail(
                    f"the service that holds {settings.data_dir} serves TLS: set "
                    "--server-ca-file (server_ca_file) to the CA that signed its certificate"
                )
            server = found.otlp
    try:
        code = cli_run.run(settings, source, paths, server, err)
    except TokenotelError as e:
        _fail(str(e), code=2 if isinstance(e, PermanentError) else 1)
    raise typer.Exit(code)


@app.command()
def demo(
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="Where the demo keeps its data (emptied first).")
    ] = Path("tokenotel-demo"),
    events: Annotated[int, typer.Option(min=200, help="Roughly how many events to send.")] = 3000,
    endpoint: Annotated[
        str | None,
        typer.Option(
            help="Send the traffic to the OTLP/gRPC endpoint of a running service (HOST:PORT) "
            "instead, then read it with the reading commands."
        ),
    ] = None,
) -> None:
    """Run the service in-process, send realistic traffic (with an attack), summarise it and
    write its compliance report (report.html in the data directory); or send that traffic to a
    running service (--endpoint)."""
    from tokenotel.demo.run import run_demo, send_demo

    _logging("warning")
    try:
        if endpoint is not None:
            send_demo(endpoint, events)
            err.print(
                "read it while the service runs: tokenotel summary · tokenotel query --outcome "
                "failure · tokenotel tokens --status revoked · tokenotel tail",
                highlight=False,
            )
            return
        run_demo(data_dir, events)
    except TokenotelError as e:
        _fail(str(e), code=1)


def main() -> None:
    app()
