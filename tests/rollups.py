"""Every rollup against a recount from the events: the rows a rollup holds (merged as
ClickHouse merges them) must equal what its views compute from all events stored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from processes import clean_env
from tokenotel.config import load_settings
from tokenotel.store.client import Store
from tokenotel.store.repair import rollup_views

SCRATCH = "rollup_recount"


def rollup_differences(store: Store) -> dict[str, tuple[int, int, int]]:
    """For each rollup that differs: (rows it holds, rows of the recount, rows in both)."""
    database = store.options.database
    views = rollup_views(store)
    differences = {}
    store.command(f"DROP DATABASE IF EXISTS {SCRATCH}")
    store.command(f"CREATE DATABASE {SCRATCH}")
    try:
        for target in sorted({target for _, _, target in views}):
            store.command(f"CREATE TABLE {SCRATCH}.{target} AS {database}.{target}")
            for _, select, into in views:
                if into == target:
                    columns = ", ".join(
                        r[0] for r in store.query(f"DESCRIBE ({select})").result_rows
                    )
                    into_scratch = f"INSERT INTO {SCRATCH}.{target} ({columns})"
                    store.command(f"{into_scratch} SELECT {columns} FROM ({select})")
            described = store.query(f"DESCRIBE {database}.{target}").result_rows
            values = ", ".join(
                f"finalizeAggregation({name})" if type_.startswith("AggregateFunction") else name
                for name, type_, *_ in described
            )
            held = f"SELECT {values} FROM {database}.{target} FINAL"
            recount = f"SELECT {values} FROM {SCRATCH}.{target} FINAL"
            counts = store.query(
                f"SELECT (SELECT count() FROM ({held})), (SELECT count() FROM ({recount})), "
                f"(SELECT count() FROM ({held} INTERSECT {recount}))"
            ).result_rows[0]
            if not counts[0] == counts[1] == counts[2]:
                differences[target] = tuple(counts)
    finally:
        store.command(f"DROP DATABASE IF EXISTS {SCRATCH}")
    return differences


def rollup_differences_in(data_dir: Path) -> dict[str, list[int]]:
    """``rollup_differences`` of a stopped service's embedded store, in a process of its own
    (one chDB data path per process)."""
    result = subprocess.run(
        [sys.executable, __file__, str(data_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


if __name__ == "__main__":
    store = Store(load_settings(data_dir=Path(sys.argv[1])).store_options)
    try:
        print(json.dumps(rollup_differences(store)))
    finally:
        store.close()
