"""Spike encodings: pure numpy functions from values or events to spike arrays.

- rate: Bernoulli spikes; a pixel of intensity x in [0, 1] spikes at each step with
  probability x (``u < x`` with ``u`` uniform float32 in [0, 1) from the given generator;
  x == 0 never spikes, x == 1 always does).
- latency: one spike per pixel at step ``t = rint((1 - x) * (steps - 1))`` computed in
  float32, with numpy's ``rint`` (ties to even: 2.5 -> 2, 7.5 -> 8). Brighter pixels
  fire earlier (x == 1 at step 0); x == 0 never fires.
- event binning: event k at time ``times[k]`` on unit ``units[k]`` falls into bin
  ``floor(times[k] * steps / window)`` (float64; exact for integer microsecond
  timestamps), i.e. bin b holds ``b * window/steps <= t < (b+1) * window/steps``.
  Events with t < 0 or t >= window are dropped. Counts per (bin, unit) are clipped to 1
  (binary spikes, what Loihi's input takes) unless ``counts=True``.

Spike arrays are float32 with time on axis 1 (batched) or axis 0 (one sample).
"""
from __future__ import annotations

import numpy as np


def rate_encode(intensity: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """intensity (N, *shape) in [0, 1] -> spikes (N, steps, *shape) float32 (0/1)."""
    x = np.asarray(intensity, dtype=np.float32)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError("rate_encode: intensities must lie in [0, 1]")
    u = rng.random((x.shape[0], steps, *x.shape[1:]), dtype=np.float32)
    return (u < x[:, None]).astype(np.float32)


def latency_steps(intensity: np.ndarray, steps: int) -> np.ndarray:
    """The latency code's spike step per pixel, ``rint((1 - x) * (steps - 1))`` (int64);
    meaningful only where x > 0 (x == 0 does not fire)."""
    x = np.asarray(intensity, dtype=np.float32)
    return np.rint((np.float32(1.0) - x) * np.float32(steps - 1)).astype(np.int64)


def latency_encode(intensity: np.ndarray, steps: int) -> np.ndarray:
    """intensity (N, *shape) in [0, 1] -> spikes (N, steps, *shape) float32: one spike per
    nonzero pixel at step ``rint((1 - x) * (steps - 1))`` (see the module docstring)."""
    x = np.asarray(intensity, dtype=np.float32)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError("latency_encode: intensities must lie in [0, 1]")
    out = np.zeros((x.shape[0], steps, *x.shape[1:]), dtype=np.float32)
    t = latency_steps(x, steps)
    idx = np.nonzero(x > 0)
    out[(idx[0], t[idx], *idx[1:])] = 1.0
    return out


def bin_events(times: np.ndarray, units: np.ndarray, n_units: int, steps: int, window: float,
               counts: bool = False, out: np.ndarray = None) -> np.ndarray:
    """Events (``times`` in the same unit as ``window``, from 0; ``units`` in
    [0, n_units)) -> (steps, n_units) float32: bin ``floor(t * steps / window)``;
    events outside [0, window) dropped; counts clipped to 1 unless ``counts``.
    ``out``: a zeroed, C-contiguous float32 array of ``steps * n_units`` elements (any
    shape) to write into instead of allocating (a batch's row); it is returned."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    units = np.asarray(units, dtype=np.int64).reshape(-1)
    if times.shape != units.shape:
        raise ValueError(f"bin_events: {times.size} times but {units.size} units")
    if units.size and (units.min() < 0 or units.max() >= n_units):
        raise ValueError(f"bin_events: units must lie in [0, {n_units}), got "
                         f"{units.min()}..{units.max()}")
    if not window > 0:
        raise ValueError(f"bin_events: window must be > 0, got {window}")
    keep = (times >= 0) & (times < window)
    b = np.floor(times[keep] * steps / window).astype(np.int64)
    b = np.minimum(b, steps - 1)  # guards t just below window rounding up to `steps`
    if out is None:
        out = np.zeros((steps, n_units), dtype=np.float32)
    elif out.size != steps * n_units or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"bin_events: out must be C-contiguous float32 with {steps * n_units} elements")
    flat = out.reshape(-1)  # a view: writes land in out
    if counts:
        np.add.at(flat, b * n_units + units[keep], np.float32(1.0))
    else:
        flat[b * n_units + units[keep]] = 1.0
    return out
