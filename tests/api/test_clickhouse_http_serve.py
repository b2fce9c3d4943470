"""`tokenotel serve --clickhouse-listen`: the ClickHouse HTTP interface of a running service,
read by clickhouse-connect while ingest goes on; and the settings it refuses to start with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import clickhouse_connect
import grpc
import pytest

from otlp_builders import RECENT_NS, export_request, grpc_export, log_record
from processes import ServeProcess, free_port, run_cli

pytestmark = pytest.mark.e2e  # starts tokenotel serve

PASSWORD = "correct horse battery staple"


def test_a_running_service_answers_clickhouse_clients_while_it_ingests(
    tmp_path: Path, serve_factory: Callable[..., ServeProcess]
) -> None:
    password_file = tmp_path / "grafana.password"
    password_file.write_text(PASSWORD + "\n")
    port = free_port()
    serve = serve_factory(
        "--clickhouse-listen", f"127.0.0.1:{port}", "--clickhouse-password-file", str(password_file)
    )
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=port, username="grafana", password=PASSWORD, database="tokenotel"
    )
    with grpc.insecure_channel(serve.grpc_target) as channel:
        for batch in range(3):
            records = [
                log_record(
                    "token.used", {"token.id": f"t{batch}-{i}"}, time_unix_nano=RECENT_NS + i
                )
                for i in range(100)
            ]
            grpc_export(channel, export_request(*records).SerializeToString())
            counted = client.query("SELECT count() FROM token_events").result_rows[0][0]
            assert counted == 100 * (batch + 1)  # each Export answered: its rows are there
    tokens = client.query("SELECT count() FROM token_inventory").result_rows[0][0]
    assert tokens == 300
    with pytest.raises(Exception, match=r"READONLY"):
        client.command("DROP TABLE token_events")
    client.close()
    assert serve.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--clickhouse-listen", "127.0.0.1:0"], "needs clickhouse_password_file"),
        (
            ["--clickhouse-listen", "127.0.0.1:0", "--clickhouse-password-file", "/nonexistent"],
            "/nonexistent",
        ),
    ],
)
def test_the_interface_never_starts_without_a_password(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli("serve", "--data-dir", str(tmp_path / "data"), *args)
    assert result.returncode != 0
    assert message in result.stderr
