"""GitLab audit events (streamed to an HTTP destination, the audit events API, or
``audit_json.log``) as token events.

Personal, project and group access tokens and deploy tokens: their ``<kind>_created``,
``_revoked`` / ``_deleted`` / ``_destroyed``, ``_rotated`` and ``_deletion_failed`` event types.
Git operations by a deploy token or deploy key (``details.author_class``) are uses of it.
"""

from __future__ import annotations

import re
from typing import Any

from tokenotel.errors import SourceRecordError
from tokenotel.sources.record import (
    AttributeValue,
    RawRecord,
    TokenRecord,
    as_object,
    iso_to_ns,
    json_object,
    kept_record,
    put,
    text_field,
)

NAME = "gitlab"

#: The kinds of token GitLab audits, by the start of their event types, and their token.type.
_KINDS = {
    "personal_access_token": "pat",
    "project_access_token": "project_access_token",
    "group_access_token": "group_access_token",
    "group_deploy_token": "deploy_token",
    "deploy_token": "deploy_token",
}
#: The end of an event type, and the event it is.
_ACTIONS = {
    "created": "token.created",
    "revoked": "token.revoked",
    "deleted": "token.revoked",
    "destroyed": "token.revoked",
    "rotated": "token.rotated",
    # Attempts that failed: the token is as it was (a revoked event would mark it revoked).
    "creation_failed": "token.create_failed",
    "deletion_failed": "token.revoke_failed",
}
#: Credentials that a git operation names as its author (details.author_class).
_GIT_CREDENTIALS = {"DeployToken": "deploy_token", "DeployKey": "deploy_key"}
# GitLab's custom messages name a project or group token's id and scopes in text:
# "Created project access token with token_id: 3642271 with scopes: [:api, :read_api]".
_TOKEN_ID = re.compile(r"token_id: (\d+)|\bwith id:? (\d+)")
_SCOPES = re.compile(r"scopes: \[([^\]]*)\]")


class GitLab:
    """GitLab audit events (JSON objects)."""

    name = NAME

    def records(self, raw: RawRecord) -> list[TokenRecord]:
        entry = json_object(raw, NAME)
        event_type = entry.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise SourceRecordError("gitlab record has no event_type: is it an audit event?")
        details = as_object(entry.get("details"))
        attributes: dict[str, AttributeValue] = {}
        event = _token_event(event_type, entry, details, attributes)
        if event is None:
            return []
        created_at = entry.get("created_at")
        time_ns = iso_to_ns(created_at, NAME, "created_at")
        # Events only streamed (never stored, such as git operations) all carry the same id:
        # the time and type make it unique.
        attributes["log.record.uid"] = f"gitlab:{entry.get('id')}:{event_type}:{created_at}"
        attributes["token.source"] = NAME
        attributes["gitlab.event_type"] = event_type
        put(attributes, "client.address", entry.get("ip_address") or details.get("ip_address"))
        put(attributes, "gitlab.entity_path", entry.get("entity_path"))
        attributes["gitlab.record"] = kept_record(entry, [])
        return [TokenRecord(event, time_ns, attributes)]


def _token_event(
    event_type: str,
    entry: dict[str, Any],
    details: dict[str, Any],
    attributes: dict[str, AttributeValue],
) -> str | None:
    author = entry.get("author_name") or details.get("author_name")
    if event_type == "repository_git_operation":
        credential = _GIT_CREDENTIALS.get(str(details.get("author_class")))
        if credential is None or not author:
            return None  # a user's git operation: how it authenticated is not said
        # GitLab names a deploy token or key in a git event by its name, in its project.
        attributes["token.id"] = f"gitlab:{credential}:{entry.get('entity_path')}:{author}"
        attributes["token.type"] = credential
        attributes["token.name"] = str(author)
        put(attributes, "user.id", entry.get("entity_path"))
        operation = as_object(details.get("custom_message"))
        put(attributes, "gitlab.protocol", operation.get("protocol"))
        put(attributes, "gitlab.git_action", operation.get("action"))
        return "token.used"
    prefix = next((p for p in _KINDS if event_type.startswith(p + "_")), None)
    if prefix is None:
        return None
    event = _ACTIONS.get(event_type[len(prefix) + 1 :])
    if event is None:
        return None
    token_type = _KINDS[prefix]
    message = text_field(details.get("custom_message") or "")
    token_id = _token_id(entry, details, message)
    if token_id is None:
        return None
    attributes["token.id"] = f"gitlab:{token_id}"  # numbers: named as GitLab's
    attributes["token.type"] = token_type
    put(attributes, "token.name", _token_name(entry, details))
    entity_type = entry.get("entity_type") or details.get("entity_type")
    put(attributes, "user.id", entry.get("entity_path") or details.get("entity_path"))
    if isinstance(entity_type, str):
        attributes["token.principal.type"] = entity_type.lower()
    put(attributes, "token.actor.id", author)
    scopes = _SCOPES.search(message)
    if scopes:
        attributes["token.scopes"] = [s.strip().lstrip(":") for s in scopes[1].split(",") if s]
    put(attributes, "token.expires_at", details.get("expires_at"))
    if event_type.endswith("_failed"):
        attributes["token.outcome"] = "failure"
        attributes["token.failure_reason"] = "error"
    if message:
        attributes["gitlab.message"] = message
    return event


def _token_id(entry: dict[str, Any], details: dict[str, Any], message: str) -> str | None:
    """The token's id: the event's target when that is the token, else the id in the message."""
    target_type = str(entry.get("target_type") or details.get("target_type") or "")
    target_id = entry.get("target_id") or details.get("target_id")
    if target_id and target_type.endswith("Token"):
        return text_field(target_id)
    found = _TOKEN_ID.search(message)
    return (found[1] or found[2]) if found else None


def _token_name(entry: dict[str, Any], details: dict[str, Any]) -> Any:
    """GitLab's target_details of a token event: its name (project and group tokens add their
    scopes in parentheses, kept out here)."""
    name = entry.get("target_details") or details.get("target_details")
    if isinstance(name, str) and name.endswith(")") and " (" in name:
        return name[: name.index(" (")]
    return name
