"""Points in time as people type them: ISO 8601, epoch seconds, or relative like 24h / 7d."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A UTC datetime; ``24h`` means 24 hours before ``now``. Raises ValueError with advice."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(**{_UNITS[match[2]]: float(match[1])})
    stripped = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", stripped):
        return datetime.fromtimestamp(float(stripped), UTC)
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-26T10:00:00Z), epoch seconds, "
            "or a relative time such as 30m, 24h, 7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
