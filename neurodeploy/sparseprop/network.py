"""Sparse random connectivity: K distinct postsynaptic targets per neuron, no self-loops.

Targets of presynaptic neuron ``j`` are drawn from a counter-based generator
(SplitMix64) seeded by ``(seed, j)``, so they can be regenerated whenever ``j`` fires
and never need to be stored: O(K) memory for the whole network. The same targets can be
materialised as CSR over presynaptic neurons (``indptr``, ``indices`` = postsynaptic
targets, ``weights`` = voltage jumps) for networks with individual weights, for training
and for export. Coupling is balanced inhibition, ``J = -J0 / sqrt(K)`` (dimensionless
voltage jump, in units of the threshold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from neurodeploy.sparseprop.models import ModelParams

_JIT = dict(cache=True, nogil=True)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SEED_MUL = np.uint64(0xD1342543DE82EF95)
_LOW32 = np.uint64(0xFFFFFFFF)


@numba.njit(**_JIT)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(**_JIT)
def _uniform_below(state, n):
    """(next state, uniform integer in [0, n)) for 0 < n < 2**32 (Lemire's method)."""
    nn = np.uint64(n)
    while True:
        state = state + _GOLDEN
        x = _mix(state) >> np.uint64(32)
        m = x * nn
        low = m & _LOW32
        if low >= nn or low >= (np.uint64(4294967296) - nn) % nn:
            return state, np.int64(m >> np.uint64(32))


def scratch_for(k: int) -> np.ndarray:
    """Work space for :func:`draw_targets`: a hash set of capacity >= 2K with stamps."""
    cap = 1 << max(4, (2 * k - 1).bit_length())
    return np.zeros(2 * cap + 1, dtype=np.int64)


@numba.njit(**_JIT)
def draw_targets(j, n, k, seed, out, scratch):
    """Write the K distinct postsynaptic targets of neuron ``j`` (none equal to ``j``)
    into ``out[:k]``, in the generator's order. ``scratch`` from :func:`scratch_for`."""
    cap = (scratch.shape[0] - 1) // 2
    mask = cap - 1
    scratch[2 * cap] += 1
    stamp = scratch[2 * cap]
    state = _mix(np.uint64(seed) * _SEED_MUL + np.uint64(j) * _GOLDEN + _GOLDEN)
    m = 0
    while m < k:
        state, t = _uniform_below(state, n - 1)
        if t >= j:
            t += 1
        h = np.int64((np.uint64(t) * _GOLDEN) >> np.uint64(40)) & mask
        while scratch[cap + h] == stamp and scratch[h] != t:
            h = (h + 1) & mask
        if scratch[cap + h] == stamp:
            continue
        scratch[cap + h] = stamp
        scratch[h] = t
        out[m] = t
        m += 1


@numba.njit(**_JIT)
def _csr_indices(n, k, seed, indices):
    out = np.empty(k, dtype=np.int64)
    scratch = np.zeros(2 * (1 << max(4, int(math.ceil(math.log2(2 * k))))) + 1, dtype=np.int64)
    for j in range(n):
        draw_targets(j, n, k, seed, out, scratch)
        for m in range(k):
            indices[j * k + m] = out[m]


def coupling(J0: float, K: int) -> float:
    """Balanced inhibitory voltage jump J = -J0 / sqrt(K)."""
    return -J0 / math.sqrt(K)


@dataclass(frozen=True)
class Network:
    """A sparse random network of identical neurons.

    params: neuron model, tau (s) and drive I (dimensionless)
    n:      number of neurons
    k:      postsynaptic targets per neuron (synapses per neuron, 1 <= K < N)
    J0:     coupling strength; every synapse is a voltage jump J = -J0 / sqrt(K)
    seed:   network seed; the targets of neuron j come from a generator seeded by (seed, j)
    """

    params: ModelParams
    n: int
    k: int
    J0: float
    seed: int

    def __post_init__(self):
        if not (2 <= self.n < 2**31):
            raise ValueError(f"neurons: expected 2 <= N < 2**31, got {self.n}")
        if not (1 <= self.k <= self.n - 1):
            raise ValueError(f"synapses: expected 1 <= K <= N - 1 = {self.n - 1}, got {self.k}")
        if not (math.isfinite(self.J0) and self.J0 >= 0):
            raise ValueError(f"J0: expected a finite number >= 0, got {self.J0}")
        if not (0 <= self.seed < 2**63):
            raise ValueError(f"seed: expected 0 <= seed < 2**63, got {self.seed}")

    @property
    def J(self) -> float:
        return coupling(self.J0, self.k)

    def targets(self, j: int) -> np.ndarray:
        out = np.empty(self.k, dtype=np.int64)
        draw_targets(int(j), self.n, self.k, self.seed, out, scratch_for(self.k))
        return out

    def to_csr(self) -> "CSR":
        indices = np.empty(self.n * self.k, dtype=np.int64)
        _csr_indices(self.n, self.k, self.seed, indices)
        indptr = np.arange(0, self.n * self.k + 1, self.k, dtype=np.int64)
        weights = np.full(indices.size, self.J, dtype=np.float64)
        return CSR(indptr, indices, weights)


@dataclass(frozen=True)
class CSR:
    """Connectivity as compressed rows over presynaptic neurons.

    indptr:  int64[N + 1]; the synapses of neuron j are ``indptr[j]:indptr[j + 1]``
    indices: int64[nnz], postsynaptic targets
    weights: float64[nnz], voltage jumps (dimensionless, units of the threshold)
    """

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray

    def __post_init__(self):
        indptr = np.array(self.indptr, dtype=np.int64)
        indices = np.array(self.indices, dtype=np.int64)
        weights = np.array(self.weights, dtype=np.float64)
        n = indptr.size - 1
        if indptr.ndim != 1 or n < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise ValueError("indptr: expected a non-decreasing int array starting at 0")
        if indices.shape != (indptr[-1],) or weights.shape != (indptr[-1],):
            raise ValueError(f"indices, weights: expected {indptr[-1]} entries (indptr[-1])")
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(f"indices: expected targets in [0, {n})")
        if not np.all(np.isfinite(weights)):
            raise ValueError("weights: expected finite numbers")
        pre = np.repeat(np.arange(n), np.diff(indptr))
        if np.any(pre == indices):
            raise ValueError("indices: self-connections are not supported")
        for name, a in (("indptr", indptr), ("indices", indices), ("weights", weights)):
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @property
    def n(self) -> int:
        return self.indptr.size - 1

    def with_weights(self, weights) -> "CSR":
        return CSR(self.indptr, self.indices, np.asarray(weights, dtype=np.float64))

