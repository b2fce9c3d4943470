"""The ids of the events committed lately, to drop the duplicates a retried request brings.

A million ids as Python ints in a set take about 70 MB; here they are sorted arrays of 8-byte
integers (8 MB), looked up by binary search for a whole insert at once. Ids arrive one insert
at a time; every ``window / generations`` of them are merged into one sorted generation, and
whole generations are forgotten, oldest first, once more than ``window`` ids are kept.
"""

from __future__ import annotations

import collections

import numpy as np

#: Inserts kept as separate small arrays before they are merged (bounds the searches a lookup
#: makes, without sorting everything at each insert).
_MAX_LOOSE_ARRAYS = 4


class RecentIds:
    """About ``window`` ids, the newest; ``window`` 0 keeps none."""

    def __init__(self, window: int, generations: int = 8) -> None:
        self.window = window
        self._generation_size = max(1, window // generations)
        self._generations: collections.deque[np.ndarray] = collections.deque()
        self._loose: list[np.ndarray] = []  # the newest inserts, each sorted

    def __len__(self) -> int:
        return sum(len(a) for a in (*self._generations, *self._loose))

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """A boolean mask: which of ``ids`` (uint64) are known."""
        known = np.zeros(len(ids), dtype=bool)
        for array in (*self._generations, *self._loose):
            where = np.searchsorted(array, ids)
            where[where == len(array)] = len(array) - 1
            known |= array[where] == ids
        return known

    def add(self, ids: np.ndarray) -> None:
        """Remembers ``ids`` (uint64) as the newest."""
        if self.window == 0 or len(ids) == 0:
            return
        self._loose.append(np.sort(np.asarray(ids, dtype=np.uint64)))
        loose = sum(len(a) for a in self._loose)
        if loose >= self._generation_size or len(self._loose) > _MAX_LOOSE_ARRAYS:
            merged = np.unique(np.concatenate(self._loose))
            self._loose = []
            if len(merged) >= self._generation_size:
                self._generations.append(merged)
            else:
                self._loose.append(merged)
        while self._generations and len(self) - len(self._generations[0]) >= self.window:
            self._generations.popleft()
