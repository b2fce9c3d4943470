"""Overload: more offered than the service maps and writes. Clients are asked to slow down
(RESOURCE_EXHAUSTED with RetryInfo, HTTP 429 with Retry-After), memory stays bounded, and
once they have sent everything again every event is stored exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import psutil
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from otlp_builders import RECENT_NS, export_request, grpc_export, log_record
from processes import ServeProcess, clean_env, http_post, stored_row_count

pytestmark = pytest.mark.e2e  # starts tokenotel processes

CLIENTS = 12
REQUESTS_EACH = 12
RECORDS_A_REQUEST = 2_000
#: Small limits, so that a dozen clients overload the service within seconds.
LIMITS = {"TOKENOTEL_MAX_PENDING_BYTES": str(1024 * 1024), "TOKENOTEL_MAX_PENDING_ROWS": "8000"}
RSS_LIMIT_MB = 1_500


def body(client: int, number: int) -> bytes:
    first = (client * REQUESTS_EACH + number) * RECORDS_A_REQUEST
    records = [
        log_record(
            "token.used",
            {
                "token.id": f"tok_{sequence % 97}",
                "token.request.id": f"req-{sequence:08d}",
                "client.address": f"10.{sequence % 200}.{sequence % 250}.7",
                "user_agent.original": "load-client/1.0",
            },
            time_unix_nano=RECENT_NS + sequence,
        )
        for sequence in range(first, first + RECORDS_A_REQUEST)
    ]
    return export_request(*records).SerializeToString()


class Backoffs:
    """The answers that asked a client to slow down, and the delays they asked for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delays_s: list[float] = []

    def add(self, delay_s: float) -> None:
        with self.lock:
            self.delays_s.append(delay_s)


def send_over_grpc(serve: ServeProcess, client: int, backoffs: Backoffs) -> None:
    with grpc.insecure_channel(serve.grpc_target) as channel:
        for number in range(REQUESTS_EACH):
            data = body(client, number)
            while True:
                try:
                    grpc_export(channel, data)
                    break
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
                    delay = retry_delay_s(e)
                    backoffs.add(delay)
                    time.sleep(delay)


def retry_delay_s(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no status details: the client would not know to retry"
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.ToNanoseconds() / 1e9
    raise AssertionError("RESOURCE_EXHAUSTED without RetryInfo: the collector would drop it")


def send_over_http(serve: ServeProcess, client: int, backoffs: Backoffs) -> None:
    for number in range(REQUESTS_EACH):
        data = body(client, number)
        while True:
            status, headers, answer = http_post(serve.logs_url, data, "application/x-protobuf")
            if status == 200:
                break
            assert status == 429, (status, answer)
            delay = float(headers["Retry-After"])
            backoffs.add(delay)
            time.sleep(delay)


def peak_rss_mb(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.is_set():
        try:
            tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree) / 2**20)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.05)


def test_overloaded_clients_are_asked_to_slow_down_and_nothing_is_lost(
    serve_factory: Callable[..., ServeProcess],
) -> None:
    serve = serve_factory(env=clean_env(**LIMITS, TOKENOTEL_RETRY_AFTER_S="0.2"))
    backoffs = Backoffs()
    stop, peak = threading.Event(), [0.0]
    watcher = threading.Thread(target=peak_rss_mb, args=(serve.proc.pid, stop, peak), daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            sends = [
                pool.submit(
                    send_over_grpc if client % 3 else send_over_http, serve, client, backoffs
                )
                for client in range(CLIENTS)
            ]
            for sent in sends:
                sent.result()
    finally:
        stop.set()
        watcher.join()
    assert serve.stop() == 0
    total = CLIENTS * REQUESTS_EACH * RECORDS_A_REQUEST
    print(
        f"{total} events, {len(backoffs.delays_s)} answers asked to slow down, "
        f"server peak RSS {peak[0]:.0f} MB"
    )
    assert backoffs.delays_s, "the service was never overloaded: the test proves nothing"
    assert set(backoffs.delays_s) <= {0.2, 1.0}  # as configured (HTTP says whole seconds)
    assert "asked to slow down" in serve.output()
    assert peak[0] < RSS_LIMIT_MB
    assert stored_row_count(serve.data_dir) == total
