"""GitHub's audit log (streaming, REST API or export, JSON; and GitHub Enterprise Server's
syslog lines) as token events.

Token lifecycle actions (``personal_access_token.*`` for fine-grained tokens,
``oauth_authorization.*`` and ``oauth_access.*`` for classic tokens and OAuth grants) become
lifecycle events; any other action that carries token data (``hashed_token``, ``token_id``,
``programmatic_access_type``) is a use of that token.
"""

from __future__ import annotations

from typing import Any

from tokenotel.errors import SourceRecordError
from tokenotel.sources.record import (
    AttributeValue,
    RawRecord,
    TokenRecord,
    content_uid,
    epoch_ms_to_ns,
    json_object,
    kept_record,
    put,
    string_list,
    text_field,
)

NAME = "github"
#: What GitHub Enterprise Server's syslog puts before each audit entry.
_SYSLOG_TAG = "github_audit: "

#: Token actions and the events they are. A fine-grained token's organisation access is asked
#: for, approved, denied or revoked; classic tokens are OAuth authorizations to GitHub.
_LIFECYCLE = {
    "personal_access_token.create": "token.created",
    "personal_access_token.update": "token.updated",
    "personal_access_token.credential_regenerated": "token.rotated",
    "personal_access_token.destroy": "token.revoked",
    "personal_access_token.request_created": "token.access_requested",
    "personal_access_token.access_granted": "token.access_approved",
    "personal_access_token.request_denied": "token.access_denied",
    "personal_access_token.request_cancelled": "token.access_cancelled",
    "personal_access_token.access_revoked": "token.revoked",
    "oauth_authorization.create": "token.created",
    "oauth_authorization.update": "token.updated",
    "oauth_authorization.destroy": "token.revoked",
    "oauth_access.create": "token.created",
    "oauth_access.update": "token.updated",
    "oauth_access.regenerate": "token.rotated",
    "oauth_access.destroy": "token.revoked",
}
#: programmatic_access_type (what authenticated the request) → token.type, by the first words
#: that match (lowercase).
_TOKEN_TYPES = (
    ("fine-grained", "pat_fine_grained"),
    ("classic", "pat_classic"),
    ("server-to-server", "github_app_installation"),
    ("installation", "github_app_installation"),
    ("user-to-server", "github_app_user"),
    ("oauth", "oauth_access"),
    ("deploy key", "deploy_key"),
    ("ssh key", "ssh_key"),
)


class GitHub:
    """GitHub audit log entries (JSON objects; GHES syslog lines ``… github_audit: {…}``)."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        entry = json_object(_payload(raw), NAME)
        action = entry.get("action")
        if not isinstance(action, str):
            return []  # GHES git entries (receive-pack) and others without an action
        event = _LIFECYCLE.get(action)
        hashed = entry.get("hashed_token")
        if event is None:
            if not (hashed or entry.get("token_id") or entry.get("programmatic_access_type")):
                return []
            event = "token.used"
        number = entry.get("token_id") or entry.get("user_programmatic_access_id")
        if number:  # GitHub's token ids are numbers: named as GitHub's, apart from others'
            token_id = f"github:{text_field(number)}"
        elif hashed:
            token_id = text_field(hashed)
        else:
            return []  # a token action naming no token
        stamp = entry.get("@timestamp", entry.get("created_at"))
        time_ns = epoch_ms_to_ns(stamp, NAME, "@timestamp")
        document_id = entry.get("_document_id")
        attributes: dict[str, AttributeValue] = {
            "log.record.uid": f"github:{document_id}" if document_id else content_uid(NAME, entry),
            "token.source": NAME,
            "github.action": action,
            "token.id": token_id,
        }
        if hashed:
            attributes["token.hash"] = text_field(hashed)
        put(attributes, "token.name", entry.get("user_programmatic_access_name"))
        token_type = _token_type(action, entry)
        if token_type:
            attributes["token.type"] = token_type
        actor = entry.get("actor")
        if event == "token.used":
            put(attributes, "user.id", actor)
        else:
            put(attributes, "user.id", entry.get("requester") or entry.get("user") or actor)
            put(attributes, "token.actor.id", actor)
        put(attributes, "client.address", entry.get("actor_ip"))
        put(attributes, "user_agent.original", entry.get("user_agent"))
        put(attributes, "token.tenant", entry.get("org") or entry.get("business"))
        put(attributes, "token.request.id", entry.get("request_id"))
        scopes = _scopes(entry)
        if scopes:
            attributes["token.scopes"] = scopes
        put(attributes, "github.repo", entry.get("repo"))
        put(attributes, "github.operation_type", entry.get("operation_type"))
        if event == "token.rotated":
            attributes["token.previous_id"] = attributes["token.id"]  # the same token, new secret
        if event == "token.access_denied":
            attributes["token.failure_reason"] = "request_denied"
        attributes["github.record"] = kept_record(entry, [])
        return [TokenRecord(event, time_ns, attributes)]


def _payload(raw: RawRecord) -> RawRecord:
    """The JSON of a record: as given, or after GHES's syslog prefix. GHES versions that write
    the entry as a Ruby hash (``{:action=>…}``) are refused with that reason."""
    if isinstance(raw, bytes):
        if raw[:1] == b"{" and raw[:2] != b"{:":
            return raw  # (the common case: JSON, parsed as bytes)
        raw = raw.decode(errors="replace")
    if not isinstance(raw, str):
        return raw
    text = raw.lstrip()
    if not text.startswith("{"):
        tag = text.find(_SYSLOG_TAG)
        if tag < 0:
            raise SourceRecordError(
                "github record is neither a JSON object nor a GHES syslog line (github_audit: …)"
            )
        text = text[tag + len(_SYSLOG_TAG) :].lstrip()
    if text.startswith("{:"):
        raise SourceRecordError(
            "github record is a GHES syslog entry in Ruby hash form ({:key=>value}), not JSON: "
            "tokenotel reads the JSON form only"
        )
    return text


def _token_type(action: str, entry: dict[str, Any]) -> str:
    access_type = entry.get("programmatic_access_type")
    if isinstance(access_type, str) and access_type:
        lowered = access_type.lower()
        for words, token_type in _TOKEN_TYPES:
            if words in lowered:
                return token_type
        return lowered.replace(" ", "_")
    if action.startswith("personal_access_token."):
        return "pat_fine_grained"
    if action.startswith("oauth_access."):
        return "oauth_access"
    if action.startswith("oauth_authorization."):
        # An authorization for an OAuth app names the app; one without is a classic token.
        app = entry.get("oauth_application_id") or entry.get("oauth_application_name")
        return "oauth_access" if app else "pat_classic"
    return ""


def _scopes(entry: dict[str, Any]) -> list[str]:
    """A classic token's scopes (``token_scopes``, comma separated), else a fine-grained
    token's permissions as ``<permission>:<access>``."""
    scopes = string_list(entry.get("token_scopes"))
    if scopes:
        return scopes
    permissions = entry.get("permissions")
    if isinstance(permissions, dict):
        return [f"{name}:{text_field(access)}" for name, access in permissions.items()]
    return []
