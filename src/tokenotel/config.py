"""One typed configuration, read once at start: flags over environment (TOKENOTEL_*) over file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tokenotel.errors import ConfigError
from tokenotel.security.credentials import FILE_NAME as CREDENTIALS_FILE_NAME
from tokenotel.store.client import ClickHouseServer, StoreOptions

ENV_PREFIX = "TOKENOTEL_"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_listen(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port (e.g. 127.0.0.1:4317 or [::1]:4317)")
    return host.strip("[]"), int(port)


def join_listen(host: str, port: int) -> str:
    """(host, port) as ``host:port``, an IPv6 host in brackets: what ``split_listen`` reads."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_listen(address: str) -> str:
    split_listen(address)
    return address


def _check_clickhouse_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{url!r} is not a ClickHouse HTTP URL (http(s)://user:password@host:8123/database)"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise ValueError(f"{url!r} has a bad port: {e}") from None
    return url


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    return url


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain identifier (letters, digits, underscore)")
    return name


def _check_readable(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"{path} is not a file: give the path of an existing file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path} is not readable: let the user tokenotel runs as read it")
    return path


def _split_paths(value: Any) -> Any:
    """A comma-separated list (the environment, a flag) as a list; a list stays one."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


ListenAddress = Annotated[str, AfterValidator(_check_listen)]
ReadableFile = Annotated[Path, AfterValidator(_check_readable)]
ClickHouseUrl = Annotated[str, AfterValidator(_check_clickhouse_url)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
PathList = Annotated[list[Path], NoDecode, BeforeValidator(_split_paths)]
HttpUrlList = Annotated[list[HttpUrl], NoDecode, BeforeValidator(_split_paths)]
Identifier = Annotated[str, AfterValidator(_check_identifier)]


def _setting(default: Any = None, *, shown: str | None = None, **constraints: Any) -> Any:
    """A setting's field: its default (a callable: computed at start), its ``description`` and
    constraints, and how the default reads in help and the README where ``str(default)`` would
    not say it well (``shown``)."""
    extra: dict[str, JsonValue] | None = {"shown": shown} if shown is not None else None
    if callable(default):
        return Field(default_factory=default, json_schema_extra=extra, **constraints)
    return Field(default, json_schema_extra=extra, **constraints)


class Settings(BaseSettings):
    """Every setting of tokenotel; each is also the environment variable TOKENOTEL_<NAME>.

    This class is the one place a setting's default and meaning are written: the command
    line's help is derived from it (``setting_help``), and a test holds the README's table to it.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    grpc_listen: ListenAddress = _setting("127.0.0.1:4317", description="OTLP/gRPC address.")
    http_listen: ListenAddress = _setting(
        "127.0.0.1:4318", description="OTLP/HTTP and health address."
    )
    api_listen: ListenAddress = _setting(
        "127.0.0.1:4320",
        description="Query API (gRPC tokenotel.v1.TokenAudit) address; never on the OTLP ports.",
    )
    clickhouse_listen: ListenAddress | None = _setting(
        shown="unset = off",
        description="Read-only ClickHouse HTTP interface over the store, for Grafana.",
    )
    clickhouse_user: str = _setting(
        "grafana", description="User name of the ClickHouse HTTP interface."
    )
    clickhouse_password_file: Path | None = _setting(
        shown="unset",
        description="File holding that user's password; required with clickhouse_listen.",
    )
    tls_cert_file: ReadableFile | None = _setting(
        shown="unset = plaintext",
        description="PEM certificate (chain) every listener serves TLS with (TLS 1.2 or later); "
        "read again when it changes (see docs/security.md).",
    )
    tls_key_file: ReadableFile | None = _setting(
        shown="unset", description="PEM private key of tls_cert_file, unencrypted."
    )
    tls_client_ca_file: ReadableFile | None = _setting(
        shown="unset = no client certificate asked",
        description="PEM CA certificates: every listener then requires a client certificate "
        "they signed (mutual TLS).",
    )
    auth: bool = _setting(
        False, description="Require a credential (tokenotel auth) on every listener."
    )
    credentials_file: Path | None = _setting(
        shown="unset = <data_dir>/credentials.json",
        description="The credentials of the listeners and their roles, as hashes "
        "(tokenotel auth add, list, revoke).",
    )
    insecure_listen: bool = _setting(
        False,
        description="Let listeners on non-loopback addresses start with neither TLS nor auth "
        "(logged as a warning).",
    )
    server: ListenAddress | None = _setting(
        shown="unset = the service that holds the data directory, else the directory itself",
        description="A running tokenotel's query API (host:port), for the reading commands.",
    )
    server_ca_file: ReadableFile | None = _setting(
        shown="unset = plaintext",
        description="PEM CA certificates that signed the server's certificate: the reading "
        "commands and import then use TLS and trust only these.",
    )
    client_cert_file: ReadableFile | None = _setting(
        shown="unset",
        description="PEM client certificate the reading commands and import present (mutual TLS).",
    )
    client_key_file: ReadableFile | None = _setting(
        shown="unset", description="PEM private key of client_cert_file, unencrypted."
    )
    server_credential_file: Path | None = _setting(
        shown="unset",
        description="File holding the credential the reading commands (role read or admin) and "
        "import (ingest or admin) send to a service with auth on.",
    )
    data_dir: Path = _setting(
        Path("tokenotel-data"),
        shown="./tokenotel-data",
        description="Data directory: the embedded store and the fingerprint key.",
    )
    clickhouse_url: ClickHouseUrl | None = _setting(
        shown="unset = embedded",
        description="ClickHouse server, http(s)://user:password@host:8123/database.",
    )
    database: Identifier = _setting(
        "tokenotel", description="Database (embedded store, or when the URL names none)."
    )
    cluster: Identifier | None = _setting(
        shown="unset", description="ClickHouse cluster name: cluster mode (see docs/cluster.md)."
    )
    retention_days: int = _setting(
        400,
        ge=1,
        description="How long events and per-minute rollups are kept (whole months are dropped).",
    )
    fingerprint_key_file: Path | None = _setting(
        shown="unset = <data_dir>/fingerprint.key", description="HMAC key, as hex."
    )
    previous_fingerprint_key_files: PathList = _setting(
        list,
        shown="none",
        description="Fingerprint keys used before a rotation (comma-separated): a search for a "
        "secret also looks for its fingerprint under each (see docs/keys.md).",
    )
    max_request_bytes: int = _setting(
        64 * 1024 * 1024,
        shown="67108864 (64 MiB)",
        gt=0,
        description="Largest request after decompression.",
    )
    batch_max_rows: int = _setting(100_000, gt=0, description="Most rows in one insert.")
    batch_max_delay_ms: int = _setting(
        50, ge=0, description="How long a batch waits for more requests."
    )
    rollup_delay_ms: int = _setting(
        1000,
        gt=0,
        description="With the embedded store, how long committed events may wait to reach the "
        "analytics rollups (token_minutes, event_minutes, token_hours, ip_failure_minutes, "
        "token_ip_first_seen), which are fed after commit in larger inserts.",
    )
    max_pending_bytes: int = _setting(
        128 * 1024 * 1024,
        shown="134217728 (128 MiB)",
        gt=0,
        description="Request bytes held (read, mapped, waiting for the store) before clients "
        "are asked to slow down.",
    )
    max_pending_rows: int = _setting(
        1_000_000,
        gt=0,
        description="Rows waiting for the store before clients are asked to slow down.",
    )
    dedup_window: int = _setting(
        1_000_000, ge=0, description="Recent event ids remembered to drop retried duplicates."
    )
    mapping_workers: int = _setting(
        lambda: os.cpu_count() or 1,
        shown="number of CPUs",
        ge=0,
        description="Processes that decode and map requests (0 = in the service process, and "
        "the detection rules with them; else the rules have a process of their own).",
    )
    ingest_nice: int = _setting(
        5,
        ge=0,
        le=19,
        description="How much lower ingest's CPU priority is than the query API's reads (a nice "
        "value): the mapping workers, the detection rules' process, and where the service may "
        "set thread priorities (CAP_SYS_NICE), the store's inserts and merges. 0: the same "
        "priority.",
    )
    retry_after_s: float = _setting(
        1.0,
        shown="1",
        gt=0,
        description="Delay clients are asked to wait when the store is down.",
    )
    tamper_evidence: bool = _setting(
        True,
        description="Seal every insert in a Merkle tree and sign checkpoints of it "
        "(docs/tamper-evidence.md); off only to measure its cost.",
    )
    signing_key_file: Path | None = _setting(
        shown="unset = <data_dir>/signing.key",
        description="Ed25519 key that signs checkpoints (created, mode 0600, when absent; its "
        "public key beside it, .pub).",
    )
    checkpoint_every_events: int = _setting(
        100_000, gt=0, description="A checkpoint once this many events were sealed since the last."
    )
    checkpoint_interval_s: float = _setting(
        60.0,
        shown="60",
        gt=0,
        description="A checkpoint at least this often, also when nothing was written.",
    )
    checkpoint_dir: Path | None = _setting(
        shown="unset",
        description="Directory every checkpoint is published to (best on another machine).",
    )
    checkpoint_webhook_url: HttpUrl | None = _setting(
        shown="unset", description="URL every checkpoint is POSTed to (text/plain), retried."
    )
    checkpoint_otlp_endpoint: HttpUrl | None = _setting(
        shown="unset",
        description="OTLP/gRPC endpoint (http://host:4317) every checkpoint is sent to as a "
        "log record.",
    )
    detection: bool = _setting(
        True,
        description="Run the detection rules on every committed insert (docs/detection.md).",
    )
    detection_rules_files: PathList = _setting(
        list,
        shown="none",
        description="YAML files of rules run besides the shipped ones (comma-separated).",
    )
    alert_webhook_urls: HttpUrlList = _setting(
        list,
        shown="none",
        description="URLs each alert is POSTed to, as Alertmanager's webhook JSON "
        "(comma-separated), retried.",
    )
    alert_otlp_endpoint: HttpUrl | None = _setting(
        shown="unset",
        description="OTLP/gRPC endpoint (http://host:4317) each alert is sent to as a log "
        "record (event tokenotel.alert).",
    )
    grafana_url: HttpUrl = _setting(
        "http://localhost:3000",
        description="Where Grafana is, for the dashboard link in each alert.",
    )
    telemetry_otlp_endpoint: HttpUrl | None = _setting(
        shown="unset",
        description="OTLP/gRPC endpoint (http://host:4317) the service's own metrics are sent "
        "to (they are always at /metrics on the OTLP/HTTP port).",
    )
    telemetry_interval_s: float = _setting(
        60.0, shown="60", gt=0, description="How often the metrics are sent to that endpoint."
    )
    log_level: Literal["debug", "info", "warning", "error"] = _setting(
        "info", description="debug, info, warning or error."
    )

    @model_validator(mode="after")
    def _clickhouse_listener_has_a_password(self) -> Settings:
        if self.clickhouse_listen is not None and self.clickhouse_password_file is None:
            raise ValueError(
                "clickhouse_listen needs clickhouse_password_file: the ClickHouse HTTP "
                "interface never runs without a password"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_go_together(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "tls_cert_file and tls_key_file go together: set both (the certificate and its "
                "private key) or neither"
            )
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "tls_client_ca_file needs tls_cert_file and tls_key_file: set them too, since "
                "client certificates are asked for only over TLS"
            )
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError(
                "client_cert_file and client_key_file go together: set both (the certificate "
                "and its private key) or neither"
            )
        if self.client_cert_file is not None and self.server_ca_file is None:
            raise ValueError(
                "client_cert_file needs server_ca_file: set it to the CA of the server's "
                "certificate, since a client certificate is presented only over TLS"
            )
        return self

    @property
    def credentials_path(self) -> Path:
        """The credentials file: the one set, else the data directory's."""
        return self.credentials_file or self.data_dir / CREDENTIALS_FILE_NAME

    @property
    def clickhouse_server(self) -> ClickHouseServer | None:
        if self.clickhouse_url is None:
            return None
        return ClickHouseServer(self.clickhouse_url, self.database)

    @property
    def trail_name(self) -> str:
        """Where the trail is, as a report names it: the server (never its password) or the
        data directory."""
        server = self.clickhouse_server
        return repr(server) if server is not None else str(self.data_dir)

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_file or self.data_dir / "signing.key"

    @property
    def store_options(self) -> StoreOptions:
        """Where and how the store keeps the events."""
        server = self.clickhouse_server
        return StoreOptions(
            data_dir=self.data_dir,
            server=server,
            database=server.database if server else self.database,
            cluster=self.cluster,
            retention_days=self.retention_days,
            retry_after_s=self.retry_after_s,
            ingest_nice=self.ingest_nice,
        )


def environment_name(setting: str) -> str:
    return f"{ENV_PREFIX}{setting.upper()}"


def default_text(setting: str) -> str:
    """A setting's default as help and the README show it."""
    field = Settings.model_fields[setting]
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown" in extra:
        return str(extra["shown"])
    return str(field.default)


def setting_help(setting: str) -> str:
    """The help of the flag for ``setting``: its meaning, environment variable and default."""
    description = Settings.model_fields[setting].description
    return f"{description} (env: {environment_name(setting)}; default: {default_text(setting)})"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Builds the settings: ``overrides`` (flags; None = not given) > environment > file > defaults.

    Raises ConfigError with one sentence naming the first bad setting.
    """
    if config_file is not None:
        _check_file(config_file)

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if config_file is not None:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
            return tuple(sources)

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return _FromFile(**given)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


def _check_file(config_file: Path) -> None:
    """The file exists and is a YAML mapping; its values are validated with the rest."""
    if not config_file.is_file():
        raise ConfigError(f"configuration file {config_file} does not exist")
    try:
        document = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read configuration file {config_file}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(
            f"configuration file {config_file} is not valid YAML{where}: {problem}"
        ) from None
    if document is not None and not isinstance(document, dict):
        raise ConfigError(
            f"configuration file {config_file} must be a mapping of setting names to values"
        )


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    name = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if not name:  # a rule across settings
        return f"invalid settings: {message}{suffix}"
    return f"invalid setting {name} ({environment_name(name)}): {message}{suffix}"
