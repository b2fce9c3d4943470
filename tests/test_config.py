"""One typed configuration: flags over environment over YAML file, validated once at start."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from otlp_builders import export_request, log_record
from processes import clean_env, free_port, http_post, launch_serve, run_cli
from tokenotel.config import join_listen, load_settings, split_listen
from tokenotel.errors import ConfigError


@pytest.fixture(autouse=True)
def no_tokenotel_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The settings read the environment: start every test from none of ours."""
    for name in list(os.environ):
        if name.startswith("TOKENOTEL_"):
            monkeypatch.delenv(name)
    yield


def yaml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokenotel.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.grpc_listen, settings.http_listen) == ("127.0.0.1:4317", "127.0.0.1:4318")
    assert settings.data_dir == Path("tokenotel-data")
    assert settings.max_request_bytes == 64 * 1024 * 1024
    assert settings.clickhouse_url is None
    assert settings.clickhouse_server is None


def test_flag_over_environment_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml_file(
        tmp_path,
        "grpc_listen: 127.0.0.1:1001\nhttp_listen: 127.0.0.1:1002\nmax_request_bytes: 1003\n"
        "log_level: debug\n",
    )
    monkeypatch.setenv("TOKENOTEL_HTTP_LISTEN", "127.0.0.1:2002")
    monkeypatch.setenv("TOKENOTEL_MAX_REQUEST_BYTES", "2003")
    settings = load_settings(config, max_request_bytes=3003, grpc_listen=None)
    assert settings.grpc_listen == "127.0.0.1:1001"  # file only
    assert settings.http_listen == "127.0.0.1:2002"  # environment over file
    assert settings.max_request_bytes == 3003  # flag over environment and file
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("grpc_listen", "nonsense", "invalid setting grpc_listen (TOKENOTEL_GRPC_LISTEN): "),
        ("http_listen", "127.0.0.1:99999", "is not host:port"),
        ("max_request_bytes", -1, "invalid setting max_request_bytes"),
        ("clickhouse_url", "ftp://db:21", "is not a ClickHouse HTTP URL"),
        ("clickhouse_url", "http://db:port/x", "has a bad port"),
        ("database", "drop table;", "is not a plain identifier"),
        ("log_level", "loud", "invalid setting log_level"),
    ],
)
def test_a_bad_value_is_one_sentence_naming_the_setting(
    setting: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(**{setting: value})
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_values_in_the_environment_and_the_file_are_reported_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENOTEL_MAX_REQUEST_BYTES", "lots")
    with pytest.raises(ConfigError, match="max_request_bytes"):
        load_settings()
    monkeypatch.delenv("TOKENOTEL_MAX_REQUEST_BYTES")
    with pytest.raises(ConfigError, match="invalid setting batch_max_rows"):
        load_settings(yaml_file(tmp_path, "batch_max_rows: 0\n"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("grpc_listen: [1, 2\n", "is not valid YAML at line 2"),
        ("- a\n- b\n", "must be a mapping of setting names to values"),
        ("max_request_bytes: 10\nunknown_setting: 1\n", "unknown_setting"),
    ],
)
def test_a_bad_file_is_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(yaml_file(tmp_path, text))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(yaml_file(tmp_path, "")).model_dump() == load_settings().model_dump()


def test_clickhouse_url_is_parsed_and_its_password_never_shown() -> None:
    settings = load_settings(clickhouse_url="https://audit:s%40cret@ch.example:8443/audit_db")
    server = settings.clickhouse_server
    assert server is not None
    assert (server.host, server.port, server.secure) == ("ch.example", 8443, True)
    assert (server.username, server.password, server.database) == ("audit", "s@cret", "audit_db")
    assert repr(server) == "https://audit@ch.example:8443/audit_db"


# -- the same rules through `tokenotel serve` ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"TOKENOTEL_GRPC_LISTEN": "nonsense"}, "invalid setting grpc_listen"),
        (["--max-request-bytes", "-1"], {}, "invalid setting max_request_bytes"),
        (["--http-listen", "localhost"], {}, "invalid setting http_listen"),
        (["--clickhouse-url", "ftp://db"], {}, "invalid setting clickhouse_url"),
        (["--config", "missing.yaml"], {}, "configuration file missing.yaml does not exist"),
        ([], {"TOKENOTEL_LOG_LEVEL": "loud"}, "invalid setting log_level"),
    ],
)
@pytest.mark.e2e
def test_serve_stops_with_exit_code_2_and_one_sentence(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = run_cli(
        "serve", "--data-dir", str(tmp_path / "data"), *args, env=clean_env(**env), cwd=tmp_path
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tokenotel: ")
    assert message in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()  # stopped before touching anything


@pytest.mark.e2e
def test_serve_uses_flag_over_environment_over_file(tmp_path: Path) -> None:
    grpc_port, http_port, unused_port = free_port(), free_port(), free_port()
    config = yaml_file(
        tmp_path,
        f"grpc_listen: 127.0.0.1:{grpc_port}\n"
        f"http_listen: 127.0.0.1:{unused_port}\n"
        f"data_dir: {tmp_path / 'from-file'}\n"
        "max_request_bytes: 1000\n",
    )
    env = clean_env(
        TOKENOTEL_API_LISTEN=f"127.0.0.1:{free_port()}",
        TOKENOTEL_HTTP_LISTEN=f"127.0.0.1:{http_port}",
        TOKENOTEL_DATA_DIR=str(tmp_path / "from-env"),
        TOKENOTEL_MAX_REQUEST_BYTES="2000",
    )
    data_dir = tmp_path / "from-flag"
    serve = launch_serve(
        ["--config", str(config), "--data-dir", str(data_dir)],
        data_dir=data_dir,
        grpc_port=grpc_port,
        http_port=http_port,
        env=env,
    )
    try:
        with grpc.insecure_channel(serve.grpc_target) as channel:  # listening where the file says
            check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert check.status in (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        padded = [
            export_request(log_record("token.used", {"token.id": "t", "pad": "x" * size}))
            for size in (1400, 2400)
        ]
        statuses = [
            http_post(serve.logs_url, request.SerializeToString(), "application/x-protobuf")[0]
            for request in padded
        ]
        assert statuses == [200, 413]  # the environment's 2000-byte limit, not the file's 1000
    finally:
        assert serve.stop() == 0
    assert (data_dir / "fingerprint.key").is_file()
    assert not (tmp_path / "from-env").exists()
    assert not (tmp_path / "from-file").exists()


def test_a_listen_address_is_written_as_it_is_read() -> None:
    """What the service records for the reading commands: an IPv6 host in brackets."""
    for address in ("127.0.0.1:4320", "[::1]:4320", "localhost:0"):
        assert join_listen(*split_listen(address)) == address
