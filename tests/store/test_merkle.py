"""The ledger's tree is RFC 9162's: tree heads, inclusion and consistency proofs as its §2.1
defines them, checked against a plain recursive MTH written here from the definition."""

from __future__ import annotations

import hashlib

import pytest

from tokenotel.store import merkle

#: The leaves of the Certificate Transparency test vectors (RFC 6962's reference code) and the
#: published tree heads of their first leaf and of all eight.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOT_1 = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
CT_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def mth(data: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 §2.1.1 states it, over leaf data."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(data[:k]) + mth(data[k:])).digest()


def _data(n: int) -> list[bytes]:
    return [f"leaf {i}".encode() for i in range(n)]


def test_tree_heads_are_the_published_vectors() -> None:
    hashes = [merkle.leaf_hash(leaf) for leaf in CT_LEAVES]
    assert merkle.CompactTree.of(hashes[:1]).root().hex() == CT_ROOT_1
    assert merkle.CompactTree.of(hashes).root().hex() == CT_ROOT_8
    assert merkle.CompactTree().root() == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("n", range(70))
def test_the_compact_tree_head_is_the_recursive_definition(n: int) -> None:
    data = _data(n)
    hashes = [merkle.leaf_hash(d) for d in data]
    tree = merkle.CompactTree.of(hashes)
    assert tree.root() == mth(data) == merkle.tree_hash(hashes)
    assert len(tree.subtrees) == n.bit_count()
    again = merkle.CompactTree.from_bytes(n, tree.to_bytes())  # as a checkpoint keeps it
    again.append(merkle.leaf_hash(b"next"))
    assert again.root() == mth([*data, b"next"])


def test_every_inclusion_proof_verifies_and_a_wrong_one_does_not() -> None:
    for n in range(1, 34):
        data = _data(n)
        hashes = [merkle.leaf_hash(d) for d in data]
        root = mth(data)
        for m in range(n):
            proof = merkle.inclusion_proof(m, hashes)
            assert merkle.verify_inclusion(m, n, hashes[m], proof, root)
            assert not merkle.verify_inclusion(m, n, merkle.leaf_hash(b"other"), proof, root)
            if proof:
                bent = [bytes(32), *proof[1:]]
                assert not merkle.verify_inclusion(m, n, hashes[m], bent, root)
                assert not merkle.verify_inclusion(m, n, hashes[m], proof[:-1], root)
            if n > 1:
                other = (m + 1) % n
                assert not merkle.verify_inclusion(other, n, hashes[m], proof, root)


def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not() -> None:
    for n in range(1, 34):
        data = _data(n)
        hashes = [merkle.leaf_hash(d) for d in data]
        new_root = mth(data)
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, hashes)
            old_root = mth(data[:m])
            assert merkle.verify_consistency(m, n, old_root, new_root, proof)
            rewritten = mth([b"changed", *data[1:m]])
            assert not merkle.verify_consistency(m, n, rewritten, new_root, proof)
            assert not merkle.verify_consistency(m, n, old_root, mth([*data, b"x"]), proof)
            if proof:
                assert not merkle.verify_consistency(m, n, old_root, new_root, proof[:-1])
                bent = [*proof[:-1], bytes(32)]
                assert not merkle.verify_consistency(m, n, old_root, new_root, bent)


def test_a_consistency_proof_is_the_definitions_subproof() -> None:
    """PROOF(3, D[7]) by hand from §2.1.4.1 (the example tree of RFC 6962 §2.1.3: the nodes it
    calls c, d, g and l), and PATH(3, D[7])."""
    data = _data(7)
    hashes = [merkle.leaf_hash(d) for d in data]
    assert merkle.consistency_proof(3, hashes) == [
        mth(data[2:3]),
        mth(data[3:4]),
        mth(data[0:2]),
        mth(data[4:7]),
    ]
    assert merkle.inclusion_proof(3, hashes) == [mth(data[2:3]), mth(data[0:2]), mth(data[4:7])]
