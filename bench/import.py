"""Import benchmark: `tokenotel import` of gzip JSON-lines files into a fresh data directory.

Makes ``--files`` gzip files for each of Vault (audit device entries) and CloudTrail (one
record a line), from the project's fixtures with their ids and times varied, so every line is
an event of its own; then imports each source's files (two runs of `tokenotel import`, one a
source) and times them. Prints events/s (stored events over the wall time of both imports), the
CPU time of an event (all the import's processes: a measure other load on the machine changes
less than the wall time), the load average before and after, and the peak RSS of the import's
processes (with its mapping workers).

Then what bounds that figure, each part alone on the same lines: the CPU an event of the
mapping (the same requests sent one at a time to one mapping worker, the worker's CPU) and of
the store (the import's stored rows inserted again into a new data directory, insert by
insert, with the rollups fed, by this process alone: bench/ingest.py's store limit, which
leaves out the ledger's and progress's writes). Their sum is the least CPU an event can cost,
and the CPUs over it the most events/s the import could reach with both parts using every core
and nothing else running. The last line is machine-readable:
``events_per_s=<n> peak_rss_mb=<n> mapping_us=<n> store_us=<n> bound_events_per_s=<n>``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).parent))

from ingest import store_limit
from tokenotel.history.run import REQUEST_LINES
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.workers import MappingPool

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "sources" / "fixtures"
START = datetime(2026, 1, 1, tzinfo=UTC)


def _time(i: int) -> str:
    return (START + timedelta(milliseconds=37 * i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hex(rng: random.Random) -> str:
    return "hmac-sha256:" + rng.randbytes(32).hex()


def vault_lines(count: int, rng: random.Random) -> list[bytes]:
    """Vault response entries (every one an event): the fixtures' responses, each with its own
    request id, time and token."""
    templates = [
        orjson.loads(line)
        for line in (FIXTURES / "vault" / "audit.jsonl").read_text().splitlines()
        if '"type":"response"' in line
    ]
    lines = []
    for i in range(count):
        entry: dict[str, Any] = orjson.loads(orjson.dumps(templates[i % len(templates)]))
        entry["time"] = _time(i)
        entry["request"]["id"] = str(uuid.UUID(int=rng.getrandbits(128)))
        token = entry.get("auth") or {}
        if "accessor" in token:
            token["accessor"] = _hex(rng) if i % 5 == 0 else token["accessor"]
        lines.append(orjson.dumps(entry))
    return lines


def cloudtrail_lines(count: int, rng: random.Random) -> list[bytes]:
    """CloudTrail records, one a line, each with its own eventID and time."""
    templates = []
    for path in sorted((FIXTURES / "cloudtrail").glob("*.json*")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            value = orjson.loads(line)
            templates += value.get("Records", [value])
    lines = []
    for i in range(count):
        record: dict[str, Any] = orjson.loads(orjson.dumps(templates[i % len(templates)]))
        record["eventID"] = str(uuid.UUID(int=rng.getrandbits(128)))
        record["eventTime"] = _time(i)[:19] + "Z"
        lines.append(orjson.dumps(record))
    return lines


def write_files(directory: Path, lines: list[bytes], files: int) -> None:
    directory.mkdir(parents=True)
    per_file = len(lines) // files
    for n in range(files):
        chunk = lines[n * per_file : (n + 1) * per_file]
        (directory / f"part-{n:03d}.jsonl.gz").write_bytes(
            gzip.compress(b"\n".join(chunk) + b"\n", compresslevel=6)
        )


def watch_rss(pid: int, peak: list[int], stop: threading.Event) -> None:
    """The largest total RSS of ``pid`` and its children, sampled every 50 ms."""
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        total = 0
        try:
            for p in [process, *process.children(recursive=True)]:
                total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
        peak[0] = max(peak[0], total)
        stop.wait(0.05)


def run_import(source: str, data_dir: Path, files: Path) -> tuple[int, float, float, int]:
    """Stored events, wall seconds, CPU seconds and peak RSS of one `tokenotel import`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tokenotel",
            "import",
            "--source",
            source,
            "--data-dir",
            str(data_dir),
            str(files),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = [0]
    stop = threading.Event()
    watcher = threading.Thread(target=watch_rss, args=(proc.pid, peak, stop), daemon=True)
    watcher.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # (the workers were waited for)
    cpu_s = sum(getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime"))
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        sys.exit(f"import failed ({proc.returncode}):\n{out}\n{err}")
    stored = int(out.split(" events stored")[0].rsplit(", ", 1)[1].replace(",", ""))
    print(
        f"{source}: {out.strip()} in {elapsed:.1f} s: {stored / elapsed:,.0f} events/s, "
        f"{cpu_s / stored * 1e6:.0f} µs of CPU an event",
        file=sys.stderr,
    )
    return stored, elapsed, cpu_s, peak[0]


def mapping_alone(source: str, directory: Path) -> tuple[int, float]:
    """Events and the worker's CPU seconds of mapping ``directory``'s lines in requests of the
    import's size, one at a time, in one mapping worker."""
    pool = MappingPool(Fingerprinter(bytes(32)), workers=1, retry_after_s=1.0)

    async def run() -> tuple[int, float]:
        await pool.start()
        (worker,) = (psutil.Process(pid) for pid in pool.pids)
        events, before = 0, sum(worker.cpu_times()[:2])
        for path in sorted(directory.glob("*.gz")):
            lines = [line for line in gzip.decompress(path.read_bytes()).split(b"\n") if line]
            for i in range(0, len(lines), REQUEST_LINES):
                mapped = await pool.map_lines(source, lines[i : i + REQUEST_LINES], time.time_ns())
                events += mapped.table.num_rows
        return events, sum(worker.cpu_times()[:2]) - before

    try:
        return asyncio.run(run())
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="events per source")
    parser.add_argument("--files", type=int, default=8, help="files per source")
    args = parser.parse_args()
    rng = random.Random(14)
    workdir = Path(tempfile.mkdtemp(prefix="tokenotel-bench-import-"))
    try:
        write_files(workdir / "vault", vault_lines(args.events, rng), args.files)
        write_files(workdir / "cloudtrail", cloudtrail_lines(args.events, rng), args.files)
        total_events = total_s = total_cpu_s = 0.0
        peak = 0
        load_before = os.getloadavg()
        for source in ("vault", "cloudtrail"):
            stored, elapsed, cpu_s, rss = run_import(source, workdir / "data", workdir / source)
            total_events += stored
            total_s += elapsed
            total_cpu_s += cpu_s
            peak = max(peak, rss)
        load_after = os.getloadavg()
        print(
            f"{total_cpu_s / total_events * 1e6:.0f} µs of CPU an event; load average (1, 5, "
            f"15 min) {', '.join(f'{x:.2f}' for x in load_before)} before, "
            f"{', '.join(f'{x:.2f}' for x in load_after)} after; {os.cpu_count()} CPUs",
            file=sys.stderr,
        )
        mapped_events = mapping_cpu_s = 0.0
        for source in ("vault", "cloudtrail"):
            events, cpu_s = mapping_alone(source, workdir / source)
            mapped_events += events
            mapping_cpu_s += cpu_s
        limit = store_limit(workdir / "data", workdir / "store-limit")
        mapping_us = mapping_cpu_s / mapped_events * 1e6
        store_us = limit.cpu_s / limit.rows * 1e6
        cpus = os.cpu_count() or 1
        bound = cpus / (mapping_us + store_us) * 1e6
        print(
            f"each part alone: the mapping {mapping_us:.1f} µs of CPU an event (one worker), "
            f"the store {store_us:.1f} µs ({limit.rows:,} rows in {limit.inserts} inserts, "
            f"{limit.events_per_s:,.0f} events/s); {cpus} CPUs over their sum: at most "
            f"{bound:,.0f} events/s",
            file=sys.stderr,
        )
        print(
            f"events_per_s={total_events / total_s:.0f} peak_rss_mb={peak / 2**20:.0f} "
            f"mapping_us={mapping_us:.1f} store_us={store_us:.1f} bound_events_per_s={bound:.0f}"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
