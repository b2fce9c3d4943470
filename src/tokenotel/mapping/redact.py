"""Finds token-shaped secrets in free text and replaces each with its fingerprint."""

from __future__ import annotations

import re
from collections.abc import Callable

# Each alternative matches one secret; group "secret" is what gets fingerprinted.
# Prefixed formats are those their issuers document; the generic ones catch
# "Bearer <anything>" / "Basic <anything>" (an Authorization header) and JWTs.
_PATTERNS = (
    r"(?i:\b(?:bearer|basic)\s+)(?P<auth>[A-Za-z0-9\-._~+/]{8,}=*)",
    # JWT. A first segment stops before another "-eyJ" and every part is possessive: a long
    # run like "eyJ-eyJ-eyJ-..." without a dot costs one pass, not one pass per "eyJ".
    r"\beyJ(?:[A-Za-z0-9_]|-(?!eyJ)){5,}+\.[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]*+",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub classic tokens
    r"\bgithub_pat_[A-Za-z0-9_]{22,}",  # GitHub fine-grained PAT
    r"\bglpat-[A-Za-z0-9_\-]{20,}",  # GitLab PAT
    r"\bxox[abpr]-[A-Za-z0-9-]{10,}",  # Slack
    r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
    r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}",  # Vault
    r"\bnpm_[A-Za-z0-9]{36}\b",  # npm
    r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}",  # OpenAI-style
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
    r"\btko_[0-9a-f]{8}_[A-Za-z0-9_-]{43}",  # tokenotel's own credentials (tokenotel auth)
)
SECRET_RE = re.compile("|".join(_PATTERNS))


def redact(text: str, fingerprint: Callable[[str], str]) -> tuple[str, str | None]:
    """Returns ``text`` with every secret replaced by its fingerprint, and the first fingerprint.

    The first fingerprint lets the mapping use an Authorization header as the token's identity
    when no ``token.value`` was sent.
    """
    first: list[str] = []

    def replace(match: re.Match[str]) -> str:
        secret = match.group("auth") or match.group(0)
        fp = fingerprint(secret)
        if not first:
            first.append(fp)
        whole = match.group(0)
        return whole[: match.start("auth") - match.start()] + fp if match.group("auth") else fp

    redacted = SECRET_RE.sub(replace, text)
    return redacted, (first[0] if first else None)
