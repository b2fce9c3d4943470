"""One typed configuration, read once at start: flags over environment (TOKENOTEL_*) over file."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import AfterValidator, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tokenotel.errors import PermanentError
from tokenotel.store.retention import DEFAULT_RETENTION_DAYS

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(PermanentError):
    """The configuration is invalid; the message says which setting and why."""


def split_listen(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not host:port (e.g. 127.0.0.1:4317 or [::1]:4317)")
    return host.strip("[]"), int(port)


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


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain identifier (letters, digits, underscore)")
    return name


ListenAddress = Annotated[str, AfterValidator(_check_listen)]
ClickHouseUrl = Annotated[str, AfterValidator(_check_clickhouse_url)]
Identifier = Annotated[str, AfterValidator(_check_identifier)]


class ClickHouseServer:
    """Connection details parsed from ``clickhouse_url``."""

    def __init__(self, url: str, default_database: str) -> None:
        parts = urlsplit(url)
        self.secure = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (8443 if self.secure else 8123)
        self.username = unquote(parts.username or "default")
        self.password = unquote(parts.password or "")
        self.database = parts.path.strip("/") or default_database

    def __repr__(self) -> str:  # never show the password
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}"


class Settings(BaseSettings):
    """Every setting of tokenotel; each is also the environment variable TOKENOTEL_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="TOKENOTEL_", extra="forbid")

    grpc_listen: ListenAddress = "127.0.0.1:4317"
    http_listen: ListenAddress = "127.0.0.1:4318"
    data_dir: Path = Path("tokenotel-data")
    clickhouse_url: ClickHouseUrl | None = None
    database: Identifier = "tokenotel"
    cluster: Identifier | None = None
    fingerprint_key_file: Path | None = None
    max_request_bytes: int = Field(64 * 1024 * 1024, gt=0)
    batch_max_rows: int = Field(100_000, gt=0)
    batch_max_delay_ms: int = Field(50, ge=0)
    max_pending_rows: int = Field(1_000_000, gt=0)
    dedup_window: int = Field(1_000_000, ge=0)
    mapping_workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=0)
    retry_after_s: float = Field(1.0, gt=0)
    retention_days: int = Field(DEFAULT_RETENTION_DAYS, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @property
    def server(self) -> ClickHouseServer | None:
        if self.clickhouse_url is None:
            return None
        return ClickHouseServer(self.clickhouse_url, self.database)


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
    name = ".".join(str(p) for p in first["loc"]) or "configuration"
    message = first["msg"].removeprefix("Value error, ")
    more = error.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"invalid setting {name} (TOKENOTEL_{name.upper()}): {message}{suffix}"
