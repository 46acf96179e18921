"""Indexed binary min-heap over a fixed set of items (neurons), numba-compiled.

The heap is three arrays:

* ``keys[p]``  -- the key at heap position ``p`` (float64; for the simulator a neuron's
  scheduled spike time, so the smallest key is the next neuron to fire);
* ``items[p]`` -- the item (neuron index) at heap position ``p`` (int64);
* ``where[i]`` -- the heap position of item ``i`` (int64), so any item's key can be
  changed in O(log N) (decrease-key sifts up, increase-key sifts down).

Keys are stored next to their items, in heap order, so that sifting compares entries
that lie close together in memory. Invariant: ``keys[(p - 1) // 2] <= keys[p]`` for
every ``p > 0`` and ``where[items[p]] == p``.
"""
from __future__ import annotations

import numba
import numpy as np

_JIT = dict(cache=True, nogil=True)


@numba.njit(**_JIT)
def sift_up(keys, items, where, p):
    """Move the entry at position ``p`` towards the root until its parent is not larger."""
    key = keys[p]
    item = items[p]
    while p > 0:
        parent = (p - 1) >> 1
        if keys[parent] <= key:
            break
        keys[p] = keys[parent]
        items[p] = items[parent]
        where[items[p]] = p
        p = parent
    keys[p] = key
    items[p] = item
    where[item] = p
    return p


@numba.njit(**_JIT)
def sift_down(keys, items, where, p):
    """Move the entry at position ``p`` towards the leaves until no child is smaller."""
    n = keys.shape[0]
    key = keys[p]
    item = items[p]
    while True:
        child = 2 * p + 1
        if child >= n:
            break
        right = child + 1
        if right < n and keys[right] < keys[child]:
            child = right
        if keys[child] >= key:
            break
        keys[p] = keys[child]
        items[p] = items[child]
        where[items[p]] = p
        p = child
    keys[p] = key
    items[p] = item
    where[item] = p
    return p


@numba.njit(**_JIT)
def update(keys, items, where, item, key):
    """Set the key of ``item`` to ``key`` and restore the heap order (O(log N))."""
    p = where[item]
    old = keys[p]
    keys[p] = key
    if key < old:
        sift_up(keys, items, where, p)
    elif key > old:
        sift_down(keys, items, where, p)


@numba.njit(**_JIT)
def heapify(keys, items, where):
    """Order arbitrary ``keys``/``items`` into a heap in O(N) (Floyd's construction)."""
    n = keys.shape[0]
    for p in range(n):
        where[items[p]] = p
    for p in range(n // 2 - 1, -1, -1):
        sift_down(keys, items, where, p)


@numba.njit(**_JIT)
def is_heap(keys, items, where):
    """Whether the heap order and the position index both hold."""
    n = keys.shape[0]
    for p in range(n):
        if where[items[p]] != p:
            return False
        if p > 0 and keys[(p - 1) >> 1] > keys[p]:
            return False
    return True


class IndexedMinHeap:
    """A thin Python wrapper over the compiled heap functions (for tests and small uses).

    ``IndexedMinHeap(keys)`` holds items ``0 .. len(keys) - 1`` with the given keys.
    """

    def __init__(self, keys):
        keys = np.asarray(keys, dtype=np.float64)
        if keys.ndim != 1 or keys.size == 0:
            raise ValueError("keys: expected a non-empty 1-d array")
        self.keys = keys.copy()
        self.items = np.arange(keys.size, dtype=np.int64)
        self.where = np.empty(keys.size, dtype=np.int64)
        heapify(self.keys, self.items, self.where)

    def __len__(self):
        return self.keys.size

    def top(self):
        """(item, key) with the smallest key."""
        return int(self.items[0]), float(self.keys[0])

    def key(self, item):
        return float(self.keys[self.where[item]])

    def update(self, item, key):
        update(self.keys, self.items, self.where, int(item), float(key))

    def check(self):
        return bool(is_heap(self.keys, self.items, self.where))
