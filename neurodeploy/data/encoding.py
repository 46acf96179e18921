"""Spike encodings: pure functions from values/events to spike arrays (time axis 1 / 0).

- rate: Bernoulli spikes, probability = intensity per step (intensity in [0, 1]);
- latency: one spike per pixel at step round((1 - x) * (steps - 1)); brighter
  pixels fire earlier; x == 0 never fires;
- event binning: events (time, unit) counted into ``steps`` equal bins over a
  window, clipped to 1 (binary spikes) unless counts are asked for.
"""
from __future__ import annotations

import numpy as np


def rate_encode(intensity: np.ndarray, steps: int, rng: np.random.Generator) -> np.ndarray:
    """intensity (N, *shape) in [0, 1] -> spikes (N, steps, *shape) float32."""
    x = np.asarray(intensity, dtype=np.float32)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError("rate_encode: intensities must lie in [0, 1]")
    u = rng.random((x.shape[0], steps, *x.shape[1:]), dtype=np.float32)
    return (u < x[:, None]).astype(np.float32)


def latency_encode(intensity: np.ndarray, steps: int) -> np.ndarray:
    """intensity (N, *shape) in [0, 1] -> one spike per nonzero pixel at step
    round((1 - x) * (steps - 1)); (N, steps, *shape) float32."""
    x = np.asarray(intensity, dtype=np.float32)
    out = np.zeros((x.shape[0], steps, *x.shape[1:]), dtype=np.float32)
    t = np.rint((1.0 - x) * (steps - 1)).astype(np.int64)
    idx = np.nonzero(x > 0)
    out[(idx[0], t[idx], *idx[1:])] = 1.0
    return out


def bin_events(times: np.ndarray, units: np.ndarray, n_units: int, steps: int, window: float,
               counts: bool = False) -> np.ndarray:
    """Events at ``times`` (same unit as ``window``, from 0) on ``units`` -> (steps,
    n_units) float32. Bin k holds events with k * window/steps <= t < (k+1) * window/steps;
    events at or after ``window`` are dropped."""
    times = np.asarray(times, dtype=np.float64)
    units = np.asarray(units, dtype=np.int64)
    keep = (times >= 0) & (times < window)
    b = np.floor(times[keep] * (steps / window)).astype(np.int64)
    b = np.minimum(b, steps - 1)
    out = np.zeros((steps, n_units), dtype=np.float32)
    np.add.at(out, (b, units[keep]), 1.0)
    return out if counts else np.minimum(out, 1.0)
