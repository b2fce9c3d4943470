"""Detection rules: what a rule is, the shipped set (rules.yaml beside this module), and
reading a user's file of rules."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tokenotel.errors import ConfigError


class Kind(StrEnum):
    """How a rule counts what matches."""

    EVENT = "event"  # every matching event is a detection
    COUNT = "count"  # at least ``threshold`` matching events of one key within ``window``
    DISTINCT = "distinct"  # at least ``threshold`` distinct ``distinct_of`` of one key
    NEW_VALUE = "new_value"  # a ``new_of`` not seen with the key within ``window``, while
    # the key was seen with others
    DORMANT = "dormant"  # the key's first matching event after ``window`` without one
    SPIKE = "spike"  # more than ``threshold`` times the key's usual rate a minute (over
    # ``baseline``) within ``window``


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


#: What a rule may group by and count distinct: the event's fields of those names.
Field_ = Annotated[str, Field(pattern="^(token|ip|principal|actor|asn|country)$")]

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str | int | timedelta) -> timedelta:
    """ "30s", "5m", "1h", "90d" (or seconds) as a timedelta."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, int):
        return timedelta(seconds=text)
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m, 1h or 90d")
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


class Match(BaseModel):
    """Which events a rule looks at; every condition given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: tuple[str, ...] = ()
    outcome: str | None = None
    token_status: tuple[str, ...] = ()
    #: The event's actor is set and is not its principal (a token made for someone else).
    actor_is_not_principal: bool = False
    #: The token lives longer than this from its creation, or has no expiry at all.
    lifetime_over: timedelta | None = None

    @field_validator("lifetime_over", mode="before")
    @classmethod
    def _lifetime(cls, value: Any) -> timedelta | None:
        return None if value is None else duration(value)


class Rule(BaseModel):
    """One detection: what it matches, how it counts, and what its alert says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern="^[a-z0-9][a-z0-9-]*$")]
    severity: Severity
    description: str
    runbook: str
    kind: Kind
    match: Match
    group_by: tuple[Field_, ...]
    window: timedelta = timedelta(0)
    threshold: Annotated[int, Field(ge=1)] = 1
    distinct_of: Field_ | None = None
    new_of: Field_ | None = None
    #: Spike: how far back the key's usual rate is taken, before the window.
    baseline: timedelta = timedelta(0)
    #: After an alert, the same rule stays quiet for the same key this long.
    suppress_for: timedelta

    @field_validator("window", "suppress_for", "baseline", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> timedelta:
        return duration(value)

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if not self.group_by:
            raise ValueError(f"rule {self.id}: group_by names at least one of token, ip, ...")
        if self.kind is not Kind.EVENT and self.window <= timedelta(0):
            raise ValueError(f"rule {self.id}: a {self.kind} rule needs a window")
        if (self.kind is Kind.DISTINCT) != (self.distinct_of is not None):
            raise ValueError(f"rule {self.id}: distinct_of goes with kind distinct, and only")
        if (self.kind is Kind.NEW_VALUE) != (self.new_of is not None):
            raise ValueError(f"rule {self.id}: new_of goes with kind new_value, and only")
        if (self.kind is Kind.SPIKE) != (self.baseline > timedelta(0)):
            raise ValueError(f"rule {self.id}: baseline goes with kind spike, and only")
        if self.kind is Kind.SPIKE and self.baseline <= self.window:
            raise ValueError(f"rule {self.id}: a spike rule's baseline is longer than its window")
        if self.kind in (Kind.DORMANT, Kind.SPIKE) and (
            self.group_by != ("token",)
            or self.match.token_status
            or self.match.actor_is_not_principal
            or self.match.lifetime_over is not None
        ):
            raise ValueError(
                f"rule {self.id}: a {self.kind} rule groups by token and matches on events "
                "and outcome only (what the token_minutes rollup keeps of the past)"
            )
        return self


SHIPPED = "rules.yaml"


def shipped_rules() -> list[Rule]:
    """The rules tokenotel ships (docs/detection.md lists them)."""
    text = resources.files(__package__).joinpath(SHIPPED).read_text(encoding="utf-8")
    return parse_rules(text, SHIPPED)


def load_rules(path: Path) -> list[Rule]:
    """The rules of a user's YAML file; raises ConfigError naming what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read the rules file {path}: {e.strerror}") from None
    return parse_rules(text, str(path))


def parse_rules(text: str, origin: str) -> list[Rule]:
    """A YAML document ``rules: [...]`` as rules; raises ConfigError."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin} is not YAML: {e}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise ConfigError(f"{origin}: expected a mapping with a list under 'rules'")
    rules: list[Rule] = []
    for number, entry in enumerate(document["rules"], 1):
        try:
            rules.append(Rule.model_validate(entry))
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(part) for part in first["loc"])
            where = f"{loc}: " if loc else ""
            raise ConfigError(f"{origin}, rule {number}: {where}{first['msg']}") from None
    ids = [rule.id for rule in rules]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{origin}: rule ids must be unique")
    return rules
