"""``tokenotel import`` on a terminal: where the records go, a progress bar, every problem on
standard error, and a summary at the end."""

from __future__ import annotations

import asyncio
import logging

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tokenotel.api.readers import read_credential_file
from tokenotel.config import Settings
from tokenotel.history.files import find_files
from tokenotel.history.progress import PROGRESS_FILE
from tokenotel.history.progress import Progress as ImportProgress
from tokenotel.history.run import (
    INSERT_DELAY_MS,
    INSERT_ROWS,
    Importer,
    PipelineSink,
    ServiceSink,
    Sink,
    summary_line,
)
from tokenotel.pipeline import Pipeline
from tokenotel.security.tls import channel_credentials

#: Problems printed one by one; past that, only counted.
MAX_REPORTED = 1_000


def run(
    settings: Settings, source: str, patterns: list[str], server: str | None, err: Console
) -> int:
    """Imports; returns the exit code (0, or 130 when interrupted)."""
    files = find_files(patterns)
    sink: Sink
    if server is not None:
        credential = (
            read_credential_file(settings.server_credential_file)
            if settings.server_credential_file is not None
            else None
        )
        tls = (
            channel_credentials(
                settings.server_ca_file, settings.client_cert_file, settings.client_key_file
            )
            if settings.server_ca_file is not None
            else None
        )
        sink = ServiceSink(server, credential, tls)
        target = f"the service at {server}"
    else:
        batches = {
            "batch_max_rows": min(settings.batch_max_rows, INSERT_ROWS),
            "batch_max_delay_ms": max(settings.batch_max_delay_ms, INSERT_DELAY_MS),
            # History is not news: `tokenotel detect` tells what it would have raised.
            "detection": False,
        }
        sink = PipelineSink(Pipeline(settings.model_copy(update=batches)))
        target = (
            str(settings.data_dir) if settings.clickhouse_url is None else "the ClickHouse server"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Each problem is reported here with its file and line: the service's tally of the
    # source's records (a warning when some are rejected) would only say it again.
    logging.getLogger("tokenotel.pipeline").setLevel(logging.ERROR)
    progress = ImportProgress(settings.data_dir / PROGRESS_FILE, source)
    reported = [0]

    def report(problem: str) -> None:
        reported[0] += 1
        if reported[0] <= MAX_REPORTED:
            bar.console.print(problem, highlight=False, markup=False, emoji=False, soft_wrap=True)
        elif reported[0] == MAX_REPORTED + 1:
            bar.console.print("(more problems: only counted from here on)", highlight=False)

    bar = Progress(
        TextColumn(f"importing {source} into {target}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    total = sum(path.stat().st_size for path in files)
    task = bar.add_task("import", total=total)
    importer = Importer(source, files, sink, progress, report, lambda n: bar.advance(task, n))
    try:
        with bar:
            summary = asyncio.run(importer.run())
    except KeyboardInterrupt:
        err.print(
            "import interrupted: what was committed is noted; run the same command again to go "
            "on from there",
            highlight=False,
        )
        return 130
    line = summary_line(summary, sink.counts_events)
    if reported[0] > MAX_REPORTED:
        line += f" ({reported[0]:,} problems, the first {MAX_REPORTED:,} printed)"
    print(f"imported into {target}: {line}")
    return 0
