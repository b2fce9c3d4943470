"""Detection: rules over token events, raising alerts that name the token or address."""

from tokenotel.detect.engine import Alert, Detector, Observed
from tokenotel.detect.rules import Rule, load_rules, shipped_rules

__all__ = ["Alert", "Detector", "Observed", "Rule", "load_rules", "shipped_rules"]
