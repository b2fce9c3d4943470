"""tokenotel as real subprocesses for tests: `serve` on free ports, and the CLI."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
CLI_TIMEOUT_S = 120


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands out as a connection's source port."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nobody listens on right now, taken below the kernel's ephemeral range: a
    server restarted on the same port (a collector, ``serve``) must find it free, and a port in
    that range can meanwhile become the source port of any outgoing connection, a client
    redialling the stopped server included. No port is handed out twice in one run."""
    floor = _ephemeral_floor()
    for _ in range(100):
        port = random.randrange(10_000, floor)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any TOKENOTEL_* or OTEL_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENOTEL_", "OTEL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


def http_get(
    url: str, timeout: float = 5, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET (an https URL with ``context``); HTTP errors are
    answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def http_post(
    url: str,
    body: bytes,
    content_type: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Status, headers and body of a request with a body (any method), errors included."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        connection.request(method, parts.path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


class SupervisedProcess:
    """A child process whose stdout and stderr go to ``log_path``; stopped with SIGTERM."""

    what = "process"
    stop_timeout_s: float = STOP_TIMEOUT_S
    proc: subprocess.Popen[bytes]
    log_path: Path
    returncode: int | None

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, then waits for a clean exit; returns the exit code."""
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.returncode = self.proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.returncode = self.proc.wait()
                message = f"{self.what} did not stop on SIGTERM:\n{self.output()}"
                raise AssertionError(message) from None
        return self.returncode


@dataclass
class ServeProcess(SupervisedProcess):
    """A running ``tokenotel serve``."""

    what = "serve"

    data_dir: Path
    grpc_port: int
    http_port: int
    log_path: Path
    proc: subprocess.Popen[bytes]
    api_port: int = 0
    returncode: int | None = field(default=None)
    #: The client side of its TLS (trusted CA, client certificate), when it serves TLS.
    tls: ssl.SSLContext | None = None

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def api_target(self) -> str:
        """host:port of the query API."""
        return f"127.0.0.1:{self.api_port}"

    @property
    def ports(self) -> tuple[int, int, int]:
        """OTLP/gRPC, OTLP/HTTP and query API ports: to start it again where clients expect it."""
        return self.grpc_port, self.http_port, self.api_port

    @property
    def http_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def logs_url(self) -> str:
        return f"{self.http_url}/v1/logs"


def start_serve(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    ports: tuple[int, int, int] | None = None,
    tls: ssl.SSLContext | None = None,
) -> ServeProcess:
    """Starts ``tokenotel serve`` in ``data_dir`` on free loopback ports (or the ``ports`` given,
    see ServeProcess.ports: a restart where clients expect it); returns once healthy (asked
    over HTTPS with the client context ``tls`` when it serves TLS)."""
    grpc_port, http_port, api_port = ports or (free_port(), free_port(), free_port())
    listen = [
        "--data-dir",
        str(data_dir),
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
        "--api-listen",
        f"127.0.0.1:{api_port}",
    ]
    serve = launch_serve(
        [*listen, *args],
        data_dir=data_dir,
        grpc_port=grpc_port,
        http_port=http_port,
        env=env,
        log_path=log_path,
        tls=tls,
    )
    serve.api_port = api_port
    return serve


def launch_serve(
    args: list[str],
    *,
    data_dir: Path,
    grpc_port: int,
    http_port: int,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    tls: ssl.SSLContext | None = None,
) -> ServeProcess:
    """Starts ``tokenotel serve <args>`` as given (the caller says where it will listen) and
    returns once GET /healthz answers 200 on ``http_port`` (over HTTPS with the client context
    ``tls``)."""
    log_path = log_path or data_dir.parent / f"{data_dir.name}-serve.log"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenotel", "serve", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env or clean_env(),
            cwd=data_dir.parent,
        )
    serve = ServeProcess(data_dir, grpc_port, http_port, log_path, proc, tls=tls)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not serve.alive():
            raise AssertionError(f"serve exited with {proc.returncode}:\n{serve.output()}")
        try:
            if http_get(f"{serve.http_url}/healthz", timeout=1, context=tls)[0] == 200:
                return serve
        except OSError:
            pass
        time.sleep(0.05)
    serve.stop()
    raise AssertionError(f"serve did not become healthy:\n{serve.output()}")


def kill_serve(serve: ServeProcess) -> None:
    """SIGKILL for the service and its mapping worker processes, as when its container is
    killed. (Workers outlive a killed service process on their own, so they are killed too.)"""
    workers = psutil.Process(serve.proc.pid).children(recursive=True)
    serve.proc.kill()
    serve.proc.wait()
    serve.returncode = serve.proc.returncode
    for worker in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.kill()
    psutil.wait_procs(workers, timeout=30)


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``tokenotel <args>`` and returns what it printed (never raises on a non-zero exit)."""
    return subprocess.run(
        [sys.executable, "-m", "tokenotel", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env or clean_env(),
        cwd=cwd,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


#: A stored event as ``query --format json`` prints it when its sender set nothing but its
#: name (and, for the record's own resource, what a test adds).
EMPTY_EVENT: dict[str, Any] = {
    "outcome": "success",
    "token_status": "",
    "failure_reason": "",
    "token_id": "",
    "token_fingerprint": "",
    "token_hash": "",
    "token_type": "",
    "token_name": "",
    "token_hint": "",
    "previous_token_id": "",
    "principal_id": "",
    "principal_type": "",
    "actor_id": "",
    "tenant": "",
    "client_ip": "",
    "user_agent": "",
    "country": "",
    "asn": 0,
    "scopes": [],
    "scopes_added": [],
    "scopes_removed": [],
    "expires_at": None,
    "issued_at": None,
    "http_method": "",
    "http_route": "",
    "url_path": "",
    "http_status": 0,
    "request_id": "",
    "reason": "",
    "source": "",
    "service_name": "",
    "environment": "",
    "scope_name": "",
    "trace_id": "",
    "span_id": "",
    "severity_text": "",
    "severity_number": 0,
    "body": "",
    "attributes": {},
    "resource_attributes": {},
}


def query_json(data_dir: Path, *filters: str) -> list[dict[str, Any]]:
    """``tokenotel query --data-dir DIR --format json [filters]`` as one dict per event."""
    result = run_cli("query", "--data-dir", str(data_dir), "--format", "json", *filters)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# Counts the rows physically in the events table, whatever the CLI's query would show, in a
# process of its own (one chDB path per process): a duplicate row cannot hide from it.
_COUNT_ROWS = """
import sys
from pathlib import Path
from tokenotel.config import load_settings
from tokenotel.store.client import EVENTS_TABLE, Store
store = Store(load_settings(data_dir=Path(sys.argv[1])).store_options)
try:
    print(store.query(f"SELECT count() FROM {EVENTS_TABLE}").result_rows[0][0])
finally:
    store.close()
"""


def stored_row_count(data_dir: Path) -> int:
    """Rows in the events table of a stopped service's embedded store, duplicates included."""
    result = subprocess.run(
        [sys.executable, "-c", _COUNT_ROWS, str(data_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def auth_add(data_dir: Path, role: str, name: str) -> str:
    """``tokenotel auth add``: the new credential, which it prints on standard output only."""
    result = run_cli("auth", "add", "--role", role, "--name", name, "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    credential = result.stdout.strip()
    assert credential.startswith("tko_") and credential not in result.stderr
    return credential
