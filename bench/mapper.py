"""Mapper micro-benchmark: µs of CPU per record to map requests of 1,000 ordinary token events
(bench/ingest.py's template), in this process, without the store. The last line is
machine-readable: ``us_per_record=<n>`` (the best of the repetitions).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ingest import template
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.mapping.mapper import Mapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests a repetition maps")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    request = template(1_000)
    mapper = Mapper(Fingerprinter(bytes(32)))
    best = float("inf")
    for _ in range(args.repeat):
        started = time.process_time()
        for i in range(args.requests):
            mapper.map(request, i)
        best = min(best, (time.process_time() - started) / (args.requests * 1_000))
    print(f"us_per_record={best * 1e6:.2f}")


if __name__ == "__main__":
    main()
