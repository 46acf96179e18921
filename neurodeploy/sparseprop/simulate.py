"""Exact event-driven simulation of sparse networks of LIF or QIF neurons.

:class:`HeapSimulator` is SparseProp: each neuron's state is its time to spike (its
phase, see :mod:`~neurodeploy.sparseprop.models`), kept in an indexed binary min-heap as
a *scheduled spike time* ``x_i`` measured from a time origin. Time passes for all
neurons at once by one global shift ``s`` (the time since the origin): neuron ``i``'s
time to spike is ``x_i - s``, so nothing is advanced per neuron. Per network spike:

1. the heap top ``j`` is the next spiker; ``s = x_j``;
2. each of its K targets ``i`` jumps through the phase-transition curve,
   ``x_i = s + ptc(x_i - s)`` -- one heap update, O(log N);
3. ``j`` is reset: ``x_j = s + T``.

Every ``rebase_every`` spikes the origin moves to the present (``x_i -= s`` for all i,
``s = 0``; O(N), so O(1) per spike when ``rebase_every >= N``), which keeps ``x_i - s``
as precise as at the start however long the run. Floating-point subtraction of one
number from all keys is monotone, so the heap order survives the rebase.

:class:`ReferenceSimulator` is the conventional exact event-driven scheme in the voltage
form: every spike it finds the neuron closest to threshold, advances all N voltages
analytically to its spike time and adds the jumps -- O(N) per spike. It serves as the
reference for the heap simulator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numba
import numpy as np

from neurodeploy.sparseprop import heap as _heap
from neurodeploy.sparseprop import models as _m
from neurodeploy.sparseprop.network import CSR, Network, draw_targets, scratch_for

_JIT = dict(cache=True, nogil=True)
_INF = math.inf


def initial_voltages(params: _m.ModelParams, n: int, seed: int) -> np.ndarray:
    """Membrane potentials with phases drawn uniformly over one free period.

    Times to spike ``u ~ U(0, T)`` (``numpy.random.default_rng(seed)``), ``V = V(u)``.
    """
    rng = np.random.default_rng(seed)
    u = (1.0 - rng.random(n)) * params.period  # in (0, T]
    return _voltages(params.model_id, u, params.drive, params.tau)


@numba.njit(**_JIT)
def _voltages(model, u, I, tau):
    v = np.empty(u.shape[0])
    for i in range(u.shape[0]):
        v[i] = _m.voltage(model, u[i], I, tau)
    return v


@numba.njit(**_JIT)
def _times_to_spike(model, v, drive, tau):
    u = np.empty(v.shape[0])
    for i in range(v.shape[0]):
        u[i] = _m.time_to_spike(model, v[i], drive[i if drive.shape[0] > 1 else 0], tau)
    return u


@numba.njit(**_JIT)
def _heap_run(model, tau, drive, period, n, k, seed, J, indptr, indices, weights,
              keys, items, where, clock, counters, rebase_every, max_spikes, t_stop,
              out_t, out_i, buf, scratch, rec):
    """Advance the heap simulation by up to ``max_spikes`` spikes before ``t_stop``.

    clock = [origin]; counters = [spikes since rebase, entries written to ``rec``].
    ``rec`` (empty: not recorded) receives each target's time to spike just before its
    jump, in order of events and targets, for the adjoint. Connectivity is
    regenerated from ``seed`` when ``indptr`` is empty, otherwise read from CSR.
    ``drive`` and ``period`` have length 1 (identical neurons) or N.
    Returns the number of spikes written to ``out_t``/``out_i``.
    """
    stored = indptr.shape[0] > 0
    hetero = drive.shape[0] > 1
    origin = clock[0]
    since = counters[0]
    recording = rec.shape[0] > 0
    r = counters[1]
    m = 0
    while m < max_spikes:
        j = items[0]
        shift = keys[0]
        if origin + shift > t_stop:
            break
        if stored:
            a = indptr[j]
            b = indptr[j + 1]
        else:
            draw_targets(j, n, k, seed, buf, scratch)
            a = 0
            b = k
        # read every target's heap entry first: independent loads overlap in memory,
        # and the sum doubles as a check that no scheduled time became NaN
        touched = 0.0
        for q in range(a, b):
            touched += keys[where[indices[q] if stored else buf[q]]]
        if touched != touched:
            raise ValueError("a scheduled spike time became NaN")
        for q in range(a, b):
            if stored:
                i = indices[q]
                w = weights[q]
            else:
                i = buf[q]
                w = J
            I = drive[i] if hetero else drive[0]
            p = where[i]
            old = keys[p]
            u = old - shift
            if recording:
                rec[r] = u
                r += 1
            new = shift + _m.ptc(model, u, w, I, tau)
            keys[p] = new
            if new > old:
                _heap.sift_down(keys, items, where, p)
            elif new < old:
                _heap.sift_up(keys, items, where, p)
        _heap.update(keys, items, where, j, shift + (period[j] if hetero else period[0]))
        out_t[m] = origin + shift
        out_i[m] = j
        m += 1
        since += 1
        if since >= rebase_every:
            for p in range(keys.shape[0]):
                keys[p] -= shift
            origin += shift
            since = 0
    clock[0] = origin
    counters[0] = since
    counters[1] = r
    return m


@numba.njit(**_JIT)
def _reference_run(model, tau, drive, n, k, seed, J, indptr, indices, weights,
                   v, clock, max_spikes, t_stop, out_t, out_i, buf, scratch):
    """O(N) per spike: next spiker by a scan, all voltages advanced analytically."""
    stored = indptr.shape[0] > 0
    hetero = drive.shape[0] > 1
    t = clock[0]
    reset = 0.0 if model == _m.LIF else -_INF
    m = 0
    while m < max_spikes:
        # next spiker: the highest voltage (identical neurons) or the shortest time to spike
        j = 0
        if hetero:
            best = _INF
            for i in range(n):
                u = _m.time_to_spike(model, v[i], drive[i], tau)
                if u < best:
                    best = u
                    j = i
            dt = best
        else:
            for i in range(1, n):
                if v[i] > v[j]:
                    j = i
            dt = _m.time_to_spike(model, v[j], drive[0], tau)
        if dt < 0.0:
            dt = 0.0
        if t + dt > t_stop:
            break
        t += dt
        # advance every neuron to the spike time
        if model == _m.LIF:
            if hetero:
                for i in range(n):
                    v[i] = drive[i] - (drive[i] - v[i]) * math.exp(-dt / tau)
            else:
                d = math.exp(-dt / tau)
                I = drive[0]
                for i in range(n):
                    v[i] = I - (I - v[i]) * d
        else:
            for i in range(n):
                a = math.sqrt(drive[i] if hetero else drive[0])
                v[i] = a * math.tan(math.atan(v[i] / a) + a * dt / tau)
        v[j] = reset
        if stored:
            lo = indptr[j]
            hi = indptr[j + 1]
        else:
            draw_targets(j, n, k, seed, buf, scratch)
            lo = 0
            hi = k
        for q in range(lo, hi):
            if stored:
                v[indices[q]] += weights[q]
            else:
                v[buf[q]] += J
        out_t[m] = t
        out_i[m] = j
        m += 1
    clock[0] = t
    return m


@dataclass
class Spikes:
    """Spikes in order of occurrence: ``times`` (s, float64) and ``neurons`` (int64)."""

    times: np.ndarray
    neurons: np.ndarray

    def __len__(self):
        return self.times.size


class _Base:
    def __init__(self, params: _m.ModelParams, v0, network: Optional[Network] = None,
                 csr: Optional[CSR] = None, drive=None):
        if (network is None) == (csr is None):
            raise ValueError("give exactly one of network (regenerated targets) or csr")
        self.params = params
        self.network = network
        self.csr = csr
        self.n = network.n if network is not None else csr.n
        v0 = np.array(v0, dtype=np.float64)
        if v0.shape != (self.n,):
            raise ValueError(f"v0: expected {self.n} initial voltages, got shape {v0.shape}")
        self.drive = np.array([params.drive] if drive is None else drive, dtype=np.float64)
        if self.drive.shape not in ((1,), (self.n,)):
            raise ValueError(f"drive: expected 1 or {self.n} values, got {self.drive.shape}")
        low = 1.0 if params.model == "lif" else 0.0
        if not np.all(self.drive > low):
            raise ValueError(f"drive: expected I > {low:g} for every {params.model} neuron")
        if params.model == "lif" and np.any(v0 >= 1.0):
            raise ValueError("v0: expected voltages below the threshold 1")
        if network is not None:
            self._conn = (network.n, network.k, network.seed, network.J,
                          np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
            k = network.k
        else:
            self._conn = (csr.n, 0, 0, 0.0, csr.indptr, csr.indices, csr.weights)
            k = 1
        self._buf = np.empty(k, dtype=np.int64)
        self._scratch = scratch_for(k)

    def run(self, n_spikes: int, t_stop: float = _INF, progress: bool = False) -> Spikes:
        """Simulate until ``n_spikes`` more spikes or time ``t_stop`` (s), whichever first."""
        if n_spikes < 0:
            raise ValueError(f"spikes: expected a count >= 0, got {n_spikes}")
        chunk = min(max(n_spikes, 1), 1 << 16)  # bounded buffers when t_stop ends the run
        times, neurons = [], []
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=n_spikes, unit="spike", unit_scale=True, leave=False)
        done = 0
        try:
            while done < n_spikes:
                size = min(chunk, n_spikes - done)
                out_t = np.empty(size)
                out_i = np.empty(size, dtype=np.int64)
                m = self._advance(size, float(t_stop), out_t, out_i)
                times.append(out_t[:m])
                neurons.append(out_i[:m])
                done += m
                if bar is not None:
                    bar.update(m)
                if m < size:
                    break
        finally:
            if bar is not None:
                bar.close()
        if not times:
            return Spikes(np.empty(0), np.empty(0, dtype=np.int64))
        return Spikes(np.concatenate(times), np.concatenate(neurons))


class HeapSimulator(_Base):
    """SparseProp: O(log N) per spike (O(K log N) with the K target updates).

    ``rebase_every``: spikes between moves of the time origin (default max(N, 1024)).
    """

    def __init__(self, params, v0, network=None, csr=None, drive=None,
                 rebase_every: Optional[int] = None):
        super().__init__(params, v0, network, csr, drive)
        if rebase_every is None:
            rebase_every = max(self.n, 1024)
        if rebase_every < 1:
            raise ValueError(f"rebase_every: expected >= 1, got {rebase_every}")
        self.rebase_every = int(rebase_every)
        model = params.model_id
        self._period = np.array([_m.period(model, I, params.tau) for I in self.drive])
        keys = _times_to_spike(model, v0, self.drive, params.tau)
        items = np.arange(self.n, dtype=np.int32)
        where = np.empty(self.n, dtype=np.int32)
        _heap.heapify(keys, items, where)
        self.keys, self.items, self.where = keys, items, where
        self.clock = np.zeros(1)
        self.counters = np.zeros(2, dtype=np.int64)
        self._rec = np.empty(0)

    @property
    def time(self) -> float:
        """Time (s) of the heap top's scheduled spike: the origin plus its key."""
        return float(self.clock[0] + self.keys[0])

    def _advance(self, size, t_stop, out_t, out_i):
        n, k, seed, J, indptr, indices, weights = self._conn
        return _heap_run(self.params.model_id, self.params.tau, self.drive, self._period,
                         n, k, seed, J, indptr, indices, weights,
                         self.keys, self.items, self.where, self.clock, self.counters,
                         self.rebase_every, size, t_stop, out_t, out_i,
                         self._buf, self._scratch, self._rec)

    def scheduled_times(self) -> np.ndarray:
        """Each neuron's next spike time (s) without further input."""
        out = np.empty(self.n)
        out[self.items] = self.keys + self.clock[0]
        return out


class ReferenceSimulator(_Base):
    """Conventional exact event-driven simulation: O(N) per spike, voltage form."""

    def __init__(self, params, v0, network=None, csr=None, drive=None):
        super().__init__(params, v0, network, csr, drive)
        self.v = np.array(v0, dtype=np.float64)
        self.clock = np.zeros(1)

    def _advance(self, size, t_stop, out_t, out_i):
        n, k, seed, J, indptr, indices, weights = self._conn
        return _reference_run(self.params.model_id, self.params.tau, self.drive,
                              n, k, seed, J, indptr, indices, weights,
                              self.v, self.clock, size, t_stop, out_t, out_i,
                              self._buf, self._scratch)
