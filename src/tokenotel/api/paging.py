"""Page tokens and tail cursors: opaque to clients, and tied to the criteria they were made for
(a token given with another filter is refused rather than read wrongly)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from google.protobuf.message import Message

from tokenotel.errors import InvalidArgument
from tokenotel.query.search import Cursor


def digest(criteria: Message) -> str:
    """A short digest of a request's criteria (a filter, or a request without its paging)."""
    return hashlib.sha256(criteria.SerializeToString(deterministic=True)).hexdigest()[:16]


def encode(criteria: Message, **values: Any) -> str:
    text = json.dumps(values | {"of": digest(criteria)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode(token: str, criteria: Message, field: str) -> dict[str, Any]:
    """The values of a token; raises InvalidArgument naming ``field`` when it is not one this
    service gave, or was made for other criteria."""
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
        assert isinstance(values, dict)
    except Exception:
        raise InvalidArgument(f"{field} is not one this service gave", field=field) from None
    if values.get("of") != digest(criteria):
        raise InvalidArgument(
            f"{field} belongs to another filter: give the filter it came with", field=field
        )
    return values


def page_token(criteria: Message, up_to: int, offset: int) -> str:
    """The next page of a search: up to which insert it reads, and from which event."""
    return encode(criteria, at=up_to, n=offset)


def read_page_token(token: str, criteria: Message) -> tuple[int, int]:
    values = decode(token, criteria, "page_token")
    return int(values["at"]), int(values["n"])


def cursor_token(criteria: Message, cursor: Cursor) -> str:
    return encode(criteria, at=cursor.stamp, n=cursor.skip)


def read_cursor(token: str, criteria: Message) -> Cursor:
    values = decode(token, criteria, "cursor")
    return Cursor(int(values["at"]), int(values["n"]))
