#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer) of request bodies through decode and mapping.

    python tests/fuzz/fuzz_ingest.py [libFuzzer flags] NEW_INPUTS_DIR [SEED_DIR ...]

Each input is decompressed, decoded and mapped exactly as the service does (``ingest_input``);
the input's first byte picks OTLP/protobuf or OTLP/JSON and no, gzip or deflate encoding. An
exception that is not a ``TokenotelError`` is a crash, an input that takes longer than
``-timeout`` seconds a hang; libFuzzer writes either to ``-artifact_prefix``. Keep what it finds
in ``tests/fuzz/crashes/``: ``test_fuzz.py`` replays every file there and in
``tests/fuzz/corpus/``. Mutations are OTLP-aware (``otlp_mutator``). To fold a campaign's new
inputs into the checked-in corpus, keeping only those that add coverage (libFuzzer merges in a
child process that it starts from this file's path, hence the ``#!`` line and the PATH)::

    PATH=.venv/bin:$PATH tests/fuzz/fuzz_ingest.py -merge=1 tests/fuzz/corpus NEW_INPUTS_DIR
"""

from __future__ import annotations

import importlib.machinery
import sys

import atheris

# The compiled core (setup.py: mypyc extensions beside their .py) is fuzzed as its Python
# source, which atheris can instrument: the extensions give libFuzzer no coverage. So here a
# module's .py comes before its extension; test_fuzz.py replays every finding through the build.
sys.path_hooks.insert(
    0,
    importlib.machinery.FileFinder.path_hook(
        (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (importlib.machinery.SourcelessFileLoader, importlib.machinery.BYTECODE_SUFFIXES),
    ),
)
sys.path_importer_cache.clear()

# Coverage comes from tokenotel's instrumented bytecode only: protobuf's JSON parser is pure
# Python and already the slowest part of an OTLP/JSON run (~0.3-1 us a byte); instrumenting it
# as well would slow every such run for edges of a library rather than of tokenotel.
with atheris.instrument_imports(include=["tokenotel"]):
    from ingest_input import run_one

from otlp_mutator import crossover, mutate  # noqa: E402 (after the hook above)
from seeds import seed_inputs  # noqa: E402


def test_one_input(data: bytes) -> None:
    run_one(data)


def main() -> None:
    # The first request imports and warms up what mapping uses lazily (pyarrow's conversions);
    # done here, that one-time cost is not taken for a slow input.
    for data in seed_inputs().values():
        run_one(data)
    atheris.Setup(sys.argv, test_one_input, custom_mutator=mutate, custom_crossover=crossover)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
