"""The window of recently committed event ids."""

from __future__ import annotations

import numpy as np

from tokenotel.store.dedup import RecentIds


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def test_known_ids_are_found_across_inserts_and_the_full_64_bits() -> None:
    recent = RecentIds(window=1000)
    recent.add(ids(5, 2**64 - 1, 3))
    recent.add(ids(2**63, 7))
    found = recent.contains(ids(3, 4, 2**64 - 1, 2**63, 2**63 + 1, 0, 7))
    assert found.tolist() == [True, False, True, True, False, False, True]


def test_about_the_window_is_kept_and_the_oldest_go_first() -> None:
    recent = RecentIds(window=1000, generations=4)
    for start in range(0, 5000, 100):  # 50 inserts of 100 ids
        recent.add(np.arange(start, start + 100, dtype=np.uint64))
    assert 1000 <= len(recent) <= 1000 + 250 + 100
    assert recent.contains(np.arange(4000, 5000, dtype=np.uint64)).all()  # the newest 1,000
    assert not recent.contains(np.arange(0, 3000, dtype=np.uint64)).any()


def test_a_window_of_zero_keeps_nothing() -> None:
    recent = RecentIds(window=0)
    recent.add(ids(1, 2))
    assert len(recent) == 0
    assert recent.contains(ids(1)).tolist() == [False]
