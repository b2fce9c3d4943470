"""Tamper evidence: signed checkpoints of the ledger's tree, where they are published, and the
verifier that checks the store against them (docs/tamper-evidence.md)."""
