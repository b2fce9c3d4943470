"""Each attack on a stored trail that tamper evidence exists for, and what ``verify`` says of it
(docs/tamper-evidence.md): events ingested through the real pipeline, the stopped store then
changed with SQL, as someone with access to the database would."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from inprocess import InProcessIngest, embedded_store
from otlp_builders import HOUR_NS, RECENT_NS, export_request, log_record
from tokenotel.integrity.checkpoint import Checkpoint, format_time, store_checkpoint
from tokenotel.integrity.signing import SigningKey, VerifierKey, load_signing_key
from tokenotel.integrity.verify import Finding, Status, Summary, Trust, Verification
from tokenotel.report.build import Integrity, integrity_section
from tokenotel.report.model import Policy
from tokenotel.report.sections import Builder
from tokenotel.store import merkle
from tokenotel.store.client import Store
from tokenotel.store.ledger import (
    JOURNAL_FILE,
    TreeHead,
    read_leaves,
    seal_rows,
    stored_groups,
    unsealed_stamps,
)

DAY_NS = 24 * HOUR_NS
OLD_NS = RECENT_NS - 62 * DAY_NS  # an earlier month, well inside retention


def _request(token: str, count: int, at_ns: int) -> object:
    return export_request(
        *(
            log_record(
                "token.used",
                {"token.id": token, "user_agent.original": "curl/8"},
                time_unix_nano=at_ns + i,
            )
            for i in range(count)
        )
    )


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four inserts (one in an earlier month), a checkpoint after each, and the final one:
    the store in ``data`` and the published checkpoints in ``published``."""
    root = tmp_path_factory.mktemp("trail")
    ingest = InProcessIngest(root / "data", checkpoint_dir=root / "published")
    try:
        for token, count, at_ns in [
            ("tok_a", 5, RECENT_NS),
            ("tok_b", 5, RECENT_NS + HOUR_NS),
            ("tok_old", 3, OLD_NS),
            ("tok_d", 5, RECENT_NS + 2 * HOUR_NS),
        ]:
            ingest.send(_request(token, count, at_ns))
            ingest.checkpoint()
    finally:
        ingest.close()
    return root


@pytest.fixture
def copy(trail: Path, tmp_path: Path) -> Path:
    """A copy of the trail for one test to tamper with."""
    shutil.copytree(trail, tmp_path / "trail", symlinks=True)  # (the store links relatively)
    return tmp_path / "trail"


def verify(root: Path, *, published: bool = True) -> tuple[list[Finding], Summary]:
    keys = [VerifierKey.parse((root / "data" / "signing.pub").read_text())]
    trust = Trust(keys, root / "published" if published else None)
    store = embedded_store(root / "data")
    try:
        pending = frozenset(unsealed_stamps(root / "data" / JOURNAL_FILE))
        verification = Verification(store, keys, trust.published(), pending_stamps=pending)
        findings = list(verification.run())
    finally:
        store.close()
    return findings, verification.summary


def tamper(root: Path, *statements: str) -> None:
    store = embedded_store(root / "data")
    try:
        for statement in statements:
            store.command(statement)
    finally:
        store.close()


def invalid(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings if f.status is Status.INVALID]


def sign_ledger(store: Store, key: SigningKey, *, final: bool) -> None:
    """Signs the ledger as the store holds it now and keeps the checkpoint in the store, as
    someone holding the signing key could."""
    tree = merkle.CompactTree.of([leaf.hash() for leaf in read_leaves(store)])
    head = TreeHead(tree.size, tree.root(), tree.to_bytes(), 0)
    store_checkpoint(store, Checkpoint.make(key, head, 2_000_000_000_000, 400, final), head)


def test_an_untouched_trail_is_valid(copy: Path) -> None:
    findings, summary = verify(copy)
    assert invalid(findings) == []
    assert summary.ok
    assert summary.lines() == [
        "5/5 checkpoints valid",  # one after each insert, and the final one
        "4/4 inserts valid",
        "0 events after the newest checkpoint, not yet covered",
    ]
    checkpoints = [f for f in findings if f.kind == "checkpoint"]
    assert [f.reason for f in checkpoints] == [
        "1 insert, 5 events",
        "1 insert, 5 events",
        "1 insert, 3 events",
        "1 insert, 5 events",
        "no inserts since the one before",  # the final checkpoint: a quiet interval
    ]
    assert all("[store and " in f.subject for f in checkpoints[:4])  # and published


def test_a_changed_row_is_found(copy: Path) -> None:
    tamper(
        copy,
        "ALTER TABLE token_events UPDATE user_agent = 'forged' WHERE token_id = 'tok_b' "
        "AND event_time = (SELECT min(event_time) FROM token_events WHERE token_id = 'tok_b') "
        "SETTINGS mutations_sync = 2",
    )
    findings, summary = verify(copy)
    [problem] = invalid(findings)
    assert problem.startswith("insert 1 (5 events at ")
    assert problem.endswith("INVALID: its events were changed: hash value doesn't match")
    assert not summary.ok
    assert "3/4 inserts valid" in summary.lines()


def test_a_verification_up_to_a_time_reads_no_insert_stored_after_it(copy: Path) -> None:
    """The report of a past period verifies the inserts that hold its events, not those of the
    months after it (docs/report.md, section 8): a changed row after them is not read."""
    forge = (
        "ALTER TABLE token_events UPDATE user_agent = 'forged' WHERE token_id = '{}' "
        "SETTINGS mutations_sync = 2"
    )
    tamper(copy, forge.format("tok_d"))  # the fourth insert
    store = embedded_store(copy / "data")
    try:
        keys = [VerifierKey.parse((copy / "data" / "signing.pub").read_text())]
        third = read_leaves(store)[2].stamp_ms
        up_to_third = Verification(store, keys, until_ms=third)
        assert invalid(list(up_to_third.run())) == []
        assert up_to_third.summary.inserts == 3
        assert up_to_third.summary.ok
        whole = Verification(store, keys)
        [problem] = invalid(list(whole.run()))
        assert problem.startswith("insert 3 (5 events at ")
    finally:
        store.close()


def test_the_reports_integrity_section_verifies_the_inserts_that_hold_its_period(
    copy: Path,
) -> None:
    """Over the earlier month, the report's section 8 digests the one insert holding its
    events: a change to a later insert is not read, a change to that insert is found."""
    keys = [VerifierKey.parse((copy / "data" / "signing.pub").read_text())]
    old = datetime.fromtimestamp(OLD_NS // 10**9, UTC)
    since = old.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    until = (since + timedelta(days=32)).replace(day=1)
    forge = (
        "ALTER TABLE token_events UPDATE user_agent = 'forged' WHERE token_id = '{}' "
        "SETTINGS mutations_sync = 2"
    )

    def section() -> dict[str, object]:
        store = embedded_store(copy / "data")
        try:
            builder = Builder(store, since, until, Policy())
            return integrity_section(store, builder, Integrity(Trust(keys))).figures
        finally:
            store.close()

    tamper(copy, forge.format("tok_d"))
    figures = section()
    assert (figures["verified"], figures["inserts_checked"], figures["inserts_valid"]) == (
        "valid",
        1,
        1,
    )
    tamper(copy, forge.format("tok_old"))
    figures = section()
    assert (figures["verified"], figures["inserts_checked"], figures["inserts_valid"]) == (
        "INVALID",
        1,
        0,
    )


def test_a_deleted_row_is_found(copy: Path) -> None:
    tamper(
        copy,
        "ALTER TABLE token_events DELETE WHERE token_id = 'tok_a' AND event_time = "
        f"fromUnixTimestamp64Nano({RECENT_NS + 2}) SETTINGS mutations_sync = 2",
    )
    findings, _ = verify(copy)
    assert [p.split(": ", 1)[1] for p in invalid(findings)] == [
        "INVALID: 4 events stored where 5 were sealed: 1 deleted"
    ]


def test_an_inserted_row_is_found(copy: Path) -> None:
    tamper(
        copy,
        # a new row of its own, and a row slipped into an existing insert (its stamp)
        "INSERT INTO token_events (event_time, event_name, token_id, ingested_at) "
        "VALUES (now64(9), 'token.used', 'forged', now64(3))",
        "INSERT INTO token_events (event_time, event_name, token_id, ingested_at) "
        "SELECT event_time + 1, event_name, 'forged', ingested_at FROM token_events "
        "WHERE token_id = 'tok_d' LIMIT 1",
    )
    findings, _ = verify(copy)
    problems = invalid(findings)
    assert len(problems) == 2
    assert problems[0].startswith("insert 3 ")
    assert problems[0].endswith("INVALID: 6 events stored where 5 were sealed: 1 inserted")
    assert problems[1].startswith("1 event stored at ")
    assert problems[1].endswith("INVALID: no insert sealed them: the rows were inserted")


def test_deleted_newest_rows_are_found_against_the_published_checkpoints(copy: Path) -> None:
    """The newest insert, its leaf and every checkpoint that covers it are gone from the
    store: what is left is consistent, and only the checkpoints published elsewhere tell."""
    tamper(
        copy,
        "ALTER TABLE token_events DELETE WHERE token_id = 'tok_d' SETTINGS mutations_sync = 2",
        "ALTER TABLE ledger DELETE WHERE sequence = 3 SETTINGS mutations_sync = 2",
        "ALTER TABLE checkpoints DELETE WHERE tree_size = 4 SETTINGS mutations_sync = 2",
    )
    findings, summary = verify(copy, published=False)
    assert summary.ok  # the store alone cannot show it
    findings, summary = verify(copy)
    problems = invalid(findings)
    assert len(problems) == 2  # the checkpoint after tok_d, and the final one
    for problem in problems:
        assert "INVALID: it covers 4 inserts and the store's ledger holds only 3: the newest " in (
            problem
        )
    assert "3/5 checkpoints valid" in summary.lines()


def test_a_dropped_partition_is_found(copy: Path) -> None:
    old_month = int(format_time(OLD_NS // 1_000_000)[:7].replace("-", ""))
    tamper(copy, f"ALTER TABLE token_events DROP PARTITION {old_month}")
    findings, _ = verify(copy)
    [problem] = invalid(findings)
    assert problem.startswith("insert 2 (3 events at ")
    assert problem.endswith("INVALID: its 3 events are missing (deleted, or their month dropped)")


def test_a_replaced_checkpoint_is_found_in_the_store_and_in_the_directory(copy: Path) -> None:
    # In the store: a checkpoint edited after signing (another root) fails its signature.
    tamper(
        copy,
        "ALTER TABLE checkpoints UPDATE note = replaceRegexpOne(note, '\\n[A-Za-z0-9+/=]{44}\\n', "
        "'\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\\n') WHERE tree_size = 2 "
        "SETTINGS mutations_sync = 2",
    )
    findings, _ = verify(copy, published=False)
    [problem] = invalid(findings)
    assert "(tree size 2) [store]: INVALID: its signature does not verify" in problem

    # In the directory: a published file rewritten the same way.
    [published] = sorted((copy / "published").rglob("000000000001-*.checkpoint"))
    published.write_text(published.read_text().replace("\n1\n", "\n2\n", 1))  # its size
    findings, _ = verify(copy)
    assert any("(tree size 2) [" in p and "published" in p for p in invalid(findings))


def test_a_trail_re_signed_with_the_stolen_key_is_found_against_the_published_ones(
    copy: Path,
) -> None:
    """Someone with the database and the signing key changes a row, fixes its leaf and signs
    every checkpoint again: the store is consistent, the published checkpoints are not."""
    store = embedded_store(copy / "data")
    try:
        store.command(
            "ALTER TABLE token_events UPDATE user_agent = 'forged' WHERE token_id = 'tok_a' "
            "SETTINGS mutations_sync = 2"
        )
        leaves = read_leaves(store)
        first = leaves[0]
        [(_, rows)] = list(stored_groups(store, first.stamp_ms, first.stamp_ms))
        digest = seal_rows(rows)[0].digest
        store.command(
            f"ALTER TABLE ledger UPDATE rows_sha256 = unhex('{digest.hex()}') "
            "WHERE sequence = 0 SETTINGS mutations_sync = 2"
        )
        store.command("TRUNCATE TABLE checkpoints")
        key = load_signing_key(copy / "data" / "signing.key", "", create=False)
        sign_ledger(store, key, final=True)
    finally:
        store.close()
    findings, summary = verify(copy, published=False)
    assert summary.ok  # with the key, the store alone is consistent
    findings, _ = verify(copy)
    problems = invalid(findings)
    assert len(problems) == 5  # every published checkpoint: all cover the first insert
    assert all("its tree head does not match the ledger" in p for p in problems)


def test_a_checkpoint_signed_with_another_key_is_found(copy: Path, tmp_path: Path) -> None:
    other = load_signing_key(tmp_path / "other.key", "vm/tokenotel/tokenotel")
    store = embedded_store(copy / "data")
    try:
        sign_ledger(store, other, final=False)
    finally:
        store.close()
    findings, _ = verify(copy)
    [problem] = invalid(findings)
    assert (
        f"INVALID: signed with another key (vm/tokenotel/tokenotel+{other.verifier.id.hex()})"
        in (problem)
    )


def test_an_interrupted_insert_is_sealed_at_the_next_start_and_only_it(copy: Path) -> None:
    """The service died between an insert's commit and its leaves: the journal names that
    insert; rows under any other stamp without a leaf are inserted rows."""
    stamps = [1_999_999_999_000, 1_999_999_999_500]
    tamper(
        copy,
        *(
            "INSERT INTO token_events (event_time, event_name, token_id, ingested_at) VALUES "
            f"(now64(9), 'token.used', 'tok_{i}', fromUnixTimestamp64Milli({stamp}))"
            for i, stamp in enumerate(stamps)
        ),
    )
    (copy / "data" / JOURNAL_FILE).write_text(f"{stamps[0]}\n")
    findings, _ = verify(copy)
    unsealed = [str(f) for f in findings if f.kind == "rows"]
    assert unsealed[0].endswith(
        "not yet covered: an insert the service had not sealed when it stopped: sealed at its "
        "next start"
    )
    assert unsealed[1].endswith("INVALID: no insert sealed them: the rows were inserted")

    InProcessIngest(copy / "data", checkpoint_dir=copy / "published").close()  # a restart
    findings, _ = verify(copy)
    recovered = [str(f) for f in findings if "recovered" in f.subject]
    assert recovered and recovered[0].startswith("insert 4 (1 event at ")
    assert [p.split(": ", 1)[1] for p in invalid(findings)] == [
        "INVALID: no insert sealed them: the rows were inserted"
    ]
    assert not (copy / "data" / JOURNAL_FILE).exists()


def test_months_dropped_by_retention_are_sealed_not_invalid(tmp_path: Path) -> None:
    """Events older than the retention are dropped with their parts; the signed retention
    says they may go."""
    data = tmp_path / "data"
    ingest = InProcessIngest(data, retention_days=400)
    try:
        ingest.send(_request("tok_ancient", 4, RECENT_NS - 800 * DAY_NS))
        ingest.send(_request("tok_recent", 2, RECENT_NS))
        ingest.checkpoint()
    finally:
        ingest.close()
    tamper(tmp_path, "OPTIMIZE TABLE token_events FINAL")  # TTL drops the expired part now
    findings, summary = verify(tmp_path, published=False)
    sealed = [str(f) for f in findings if f.status is Status.SEALED]
    assert len(sealed) == 1 and sealed[0].startswith("insert 0 (4 events at ")
    assert sealed[0].endswith("sealed: dropped by retention (400 days, signed in the checkpoints)")
    assert invalid(findings) == []
    assert summary.lines() == [
        "2/2 checkpoints valid",
        "1/1 inserts valid",
        "1 inserts (4 events) sealed: dropped by retention",
        "0 events after the newest checkpoint, not yet covered",
    ]
