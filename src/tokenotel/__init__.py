"""tokenotel: one audit trail for every API token, from OTLP logs to ClickHouse and Grafana."""

from tokenotel.config import Settings, load_settings
from tokenotel.mapping.fingerprint import Fingerprinter
from tokenotel.model import COLUMNS, KNOWN_EVENTS, Outcome

__version__ = "0.1.0"

__all__ = ["COLUMNS", "KNOWN_EVENTS", "Fingerprinter", "Outcome", "Settings", "load_settings"]
