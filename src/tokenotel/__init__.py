"""tokenotel: one audit trail for every API token, from OTLP logs to ClickHouse and Grafana."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# numpy's OpenBLAS keeps a thread a core that spins waiting for work: tokenotel does no linear
# algebra, and those threads took ~3% of an import's CPU. Set before numpy loads, so it holds
# for the service, the commands and the mapping workers alike (a value already set stays).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

if TYPE_CHECKING:
    from tokenotel.config import Settings, load_settings
    from tokenotel.mapping.fingerprint import Fingerprinter
    from tokenotel.model import COLUMNS, KNOWN_EVENTS, Outcome

__version__ = "0.1.0"

__all__ = ["COLUMNS", "KNOWN_EVENTS", "Fingerprinter", "Outcome", "Settings", "load_settings"]

# Imported on first use: a mapping worker process imports the package for its mapping modules
# alone, and the configuration's dependencies (pydantic, the ClickHouse driver) would cost
# each worker ~20 MB it never uses.
_HOME = {
    "COLUMNS": "tokenotel.model",
    "KNOWN_EVENTS": "tokenotel.model",
    "Outcome": "tokenotel.model",
    "Fingerprinter": "tokenotel.mapping.fingerprint",
    "Settings": "tokenotel.config",
    "load_settings": "tokenotel.config",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'tokenotel' has no attribute {name!r}")
