"""Builds tokenotel's compiled core: the modules that map every OTLP log record (decoding its
protobuf fields, each attribute's effect on the row, fingerprints and redaction), compiled to C
extensions by mypyc from the same typed Python source. Everything else in pyproject.toml."""

from mypyc.build import mypycify
from setuptools import setup

#: Compiled where they are; the .py beside each stays the source (and what mypy checks).
COMPILED = [
    "src/tokenotel/mapping/wire.py",
    "src/tokenotel/mapping/values.py",
    "src/tokenotel/mapping/redact.py",
    "src/tokenotel/mapping/fingerprint.py",
    "src/tokenotel/mapping/mapper.py",
]

setup(
    ext_modules=mypycify(
        # The build has none of the run-time dependencies: their types are unknown (Any) here.
        ["--config-file=pyproject.toml", "--ignore-missing-imports", *COMPILED],
        separate=True,  # an extension beside each module, which an editable install finds
        opt_level="3",
    )
)
