"""A token known by the hash its source keeps of it (GitHub's hashed_token) is found by that
hash, and by its secret: the events of GitHub's audit log, mapped and stored as they come."""

from __future__ import annotations

from pathlib import Path

from inprocess import InProcessIngest
from otlp_builders import export_request, log_record
from tokenotel.mapping.fingerprint import github_hashed_token
from tokenotel.query.search import EventFilter, search
from tokenotel.query.timeline import timeline
from tokenotel.sources import SOURCES

# A git clone and an API call made with a fine-grained token GitHub names by nothing but its
# hash, and one with another token (base64 SHA-256 of made-up tokens).
FINE = "github_pat_11FAKEFINEGRAINED0000_TokenotelTestsOnlyNotARealToken000000000000000000000000"
FINE_HASH = github_hashed_token(FINE)
OTHER_HASH = github_hashed_token("ghp_AnotherFakeTokenForTokenotelTests00")
ENTRIES = [
    {"@timestamp": 1714644030000, "_document_id": "d1", "action": "git.clone",
     "actor": "monalisa", "hashed_token": FINE_HASH,
     "programmatic_access_type": "Fine-grained personal access token"},
    {"@timestamp": 1714644040000, "_document_id": "d2", "action": "repo.download_zip",
     "actor": "monalisa", "hashed_token": FINE_HASH,
     "programmatic_access_type": "Fine-grained personal access token"},
    {"@timestamp": 1714644050000, "_document_id": "d3", "action": "git.clone",
     "actor": "hubot", "hashed_token": OTHER_HASH, "token_id": 77,
     "programmatic_access_type": "Personal access token (classic)"},
]  # fmt: skip


def test_events_are_found_by_githubs_hash_of_the_token(tmp_path: Path) -> None:
    records = [r for entry in ENTRIES for r in SOURCES["github"].records(entry)]
    ingest = InProcessIngest(tmp_path / "data")
    try:
        result = ingest.send(
            export_request(
                *(log_record(r.event_name, r.attributes, time_unix_nano=r.time_unix_nano)
                  for r in records)
            )
        )  # fmt: skip
        assert result.rejected == 0
        store = ingest.pipeline.store
        found = search(store, EventFilter(tokens=[FINE_HASH]), limit=10)
        assert [(e["token_hash"], e["attributes"]["github.action"]) for e in found] == [
            (FINE_HASH, "git.clone"),
            (FINE_HASH, "repo.download_zip"),
        ]
        # A token with an id of its own is found by its hash too.
        [other] = search(store, EventFilter(tokens=[OTHER_HASH]), limit=10)
        assert (other["token_id"], other["token_hash"]) == ("github:77", OTHER_HASH)
        assert len(timeline(store, OTHER_HASH, limit=10)["events"]) == 1
    finally:
        ingest.close()
