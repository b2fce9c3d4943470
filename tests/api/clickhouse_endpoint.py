"""The ClickHouse HTTP interface for tests: an embedded store holding the Grafana tests' attack
scenario, the listener over it on an event loop of its own, raw HTTP requests, and every
panel, variable and alert query of grafana/ as the plugin's backend would send it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.client
import ipaddress
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# The Grafana tests' helpers (file loading, macros, variables, scenarios) live beside those
# tests; pytest puts only this directory on the path for this module.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grafana"))

import grafana_files as files
import grafana_scenarios as scenarios
import grafana_variables as variables
import macros

from tokenotel.api.clickhouse_http import ClickHouseHttpListener, QueryLimits
from tokenotel.config import load_settings
from tokenotel.pipeline import Pipeline
from tokenotel.store.client import Store

USER = "grafana"
PASSWORD = "s3cret-for-grafana"
SCENARIO_SECOND_OF_HOUR = 45 * 60 + 30


@dataclass
class Traffic:
    """The attack scenario, stored, and the instant it calls "now"."""

    store: Store
    now: dt.datetime
    data_dir: Path


def _scenario_now(wall_ns: int) -> int:
    """Minute 45, second 30 of the current hour or the one before: buckets fall alike on every
    run (as the Grafana tests pick their "now")."""
    seconds = wall_ns // 1_000_000_000
    return (seconds - (seconds % 3600 - SCENARIO_SECOND_OF_HOUR) % 3600) * 1_000_000_000


@contextmanager
def attack_traffic(data_dir: Path) -> Iterator[Traffic]:
    """The attack scenario sent through the real pipeline into an embedded store in
    ``data_dir``; the store is closed at the end (one chDB path per process)."""
    now_ns = _scenario_now(time.time_ns())
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("TOKENOTEL_")]}
    try:
        pipeline = Pipeline(load_settings(data_dir=data_dir, mapping_workers=0))
    finally:
        os.environ.update(saved)

    async def ingest() -> None:
        await pipeline.start()
        try:
            for request in scenarios.build("attack", now_ns).requests():
                body = request.SerializeToString()
                result = await pipeline.export(body, "application/x-protobuf")
                assert not result.rejected, result
        finally:
            await pipeline.stop()

    asyncio.run(ingest())
    try:
        pipeline.store.connect()  # stopped pipelines: the store opens again for reading
        yield Traffic(pipeline.store, dt.datetime.fromtimestamp(now_ns / 1e9, dt.UTC), data_dir)
    finally:
        pipeline.store.close()


@contextmanager
def running_listener(
    store: Store, limits: QueryLimits | None = None
) -> Iterator[ClickHouseHttpListener]:
    """The listener on 127.0.0.1 (a free port), on an event loop in a thread of its own."""
    listener = ClickHouseHttpListener(
        "127.0.0.1", 0, store, user=USER, password=PASSWORD, limits=limits
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="clickhouse-http-test", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(listener.start(), loop).result()
        try:
            yield listener
        finally:
            asyncio.run_coroutine_threadsafe(listener.stop(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def code(self) -> int | None:
        """The ClickHouse error code (X-ClickHouse-Exception-Code), None on success."""
        value = self.headers.get("X-ClickHouse-Exception-Code")
        return int(value) if value is not None else None


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def send(
    port: int,
    sql: str | None,
    params: Mapping[str, str] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
    path: str = "/",
    timeout_s: float = 120,
) -> Answer:
    """One request as a ClickHouse HTTP client sends it: the SQL as the body of a POST (or the
    ``query`` parameter of a GET); Basic credentials unless ``headers`` say otherwise."""
    query = dict(params or {})
    body = None
    if method == "GET" and sql is not None:
        query["query"] = sql
    elif sql is not None:
        body = sql.encode()
    target = path + ("?" + urlencode(query) if query else "")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request(
            method, target, body=body, headers=dict(basic() if headers is None else headers)
        )
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def grafana_queries(now: dt.datetime) -> list[tuple[str, str]]:
    """(origin, SQL) of every panel, variable and alert query of grafana/ at ``now``, with the
    dashboards' default variable values and the macros expanded as the plugin expands them."""
    queries = []
    for query in [*files.panel_queries(), *files.variable_queries(), *files.alert_queries()]:
        values = files.default_variables(query.dashboard) if query.dashboard else {}
        to = now - dt.timedelta(seconds=query.to_s)
        context = macros.QueryContext(to - dt.timedelta(seconds=query.range_s), to, query.interval)
        queries.append(
            (query.origin, macros.expand(variables.substitute(query.sql, values), context))
        )
    return queries


def comparable(value: Any) -> Any:
    """A value as the Go test program prints it (times as microseconds since the epoch,
    addresses as text, IPv4-mapped IPv6 as IPv4), floats rounded for comparison."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        delta = aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return {"unix_us": delta // dt.timedelta(microseconds=1)}
    if isinstance(value, dt.date):
        return comparable(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC))
    if isinstance(value, ipaddress.IPv6Address):
        return str(value.ipv4_mapped or value)
    if isinstance(value, ipaddress.IPv4Address):
        return str(value)
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, list | tuple):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        return {str(comparable(k)): comparable(v) for k, v in value.items()}
    return value
