"""A dense layer's input currents ``x @ W^T`` from sparse spike inputs, event by event.

Spike inputs are mostly zero: at the few-percent rates of trained networks a GEMM
spends nearly all its work on zeros. On CPU, when at most :data:`EVENT_DENSITY` of the
inputs are nonzero, both products of a layer's training step run per event instead
(compiled loops, numba; rows split across cores):

- forward, ``current[r] = sum over inputs i with x[r, i] != 0 of x[r, i] * W[:, i]``;
- backward, ``dL/dW[:, i] += x[r, i] * dL/dcurrent[r]`` for the same events.

A weight matrix too large for the cache (:data:`CACHED_WEIGHT_BYTES`) takes torch's
sparse CSR products instead, which reuse weights across rows as a GEMM does.

The input gradient ``dL/dcurrent @ W`` stays a GEMM (it has no zeros to skip). The
sums run in input order, so they round differently from a GEMM's blocked order; every
training path takes its currents from :func:`input_current`, so the dense and the
sparse backward still see the same currents and fire the same spikes. CUDA, dense
inputs and missing numba take ``x @ W^T``.
"""
from __future__ import annotations

import torch

from neurodeploy import _numba
from neurodeploy._numba import prange as _prange

#: the largest fraction of nonzero inputs for which the event products run
EVENT_DENSITY = 0.12
#: weight matrices up to this size (bytes) take the compiled loops, which read one
#: weight row per event and win while the matrix stays in cache; larger ones take
#: torch's sparse (CSR) products, which block the weights as a GEMM does
CACHED_WEIGHT_BYTES = 16 << 20


def _event_current(x, wt, out):  # pragma: no cover - compiled
    """out (R, O) += x (R, I) @ wt (I, O), one weight row per nonzero input."""
    nr, ni = x.shape
    no = wt.shape[1]
    for r in _prange(nr):
        row = out[r]
        for i in range(ni):
            xi = x[r, i]
            if xi != 0:
                w = wt[i]
                for o in range(no):
                    row[o] += xi * w[o]


def _event_weight_grad(x, g, parts):  # pragma: no cover - compiled
    """parts (P, I, O): part p += x[rows of p]^T @ g[rows of p], one row of g per
    nonzero input; the caller sums the parts."""
    nr, ni = x.shape
    no = g.shape[1]
    n_parts = parts.shape[0]
    for p in _prange(n_parts):
        acc = parts[p]
        for r in range(p * nr // n_parts, (p + 1) * nr // n_parts):
            gr = g[r]
            for i in range(ni):
                xi = x[r, i]
                if xi != 0:
                    a = acc[i]
                    for o in range(no):
                        a[o] += xi * gr[o]


def _events_apply(x: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return False
    if _numba.parallel(_event_current) is None:
        return False
    return int(torch.count_nonzero(x)) <= EVENT_DENSITY * x.numel()


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.detach().reshape(-1, x.shape[-1]).contiguous()


def _csr(x2: torch.Tensor) -> torch.Tensor:
    import warnings
    with warnings.catch_warnings():  # torch calls its CSR support beta
        warnings.simplefilter("ignore", UserWarning)
        return x2.to_sparse_csr()


def _cached(n_in: int, n_out: int, dtype: torch.dtype) -> bool:
    return n_in * n_out * torch.empty((), dtype=dtype).element_size() <= CACHED_WEIGHT_BYTES


def _current_by_events(x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if not _cached(x2.shape[1], weight.shape[0], x2.dtype):
        return torch.sparse.mm(_csr(x2), weight.detach().to(x2.dtype).T.contiguous())
    wt = weight.detach().to(x2.dtype).T.contiguous()
    out = torch.zeros(x2.shape[0], wt.shape[1], dtype=x2.dtype)
    _numba.parallel(_event_current)(x2.numpy(), wt.numpy(), out.numpy())
    return out


def _weight_grad_by_events(x2: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    if not _cached(x2.shape[1], g2.shape[1], g2.dtype):
        return torch.sparse.mm(_csr(x2.T.contiguous().to(g2.dtype)), g2).T
    import numba
    n_parts = max(1, min(numba.get_num_threads(), x2.shape[0]))
    parts = torch.zeros(n_parts, x2.shape[1], g2.shape[1], dtype=g2.dtype)
    _numba.parallel(_event_weight_grad)(x2.to(g2.dtype).numpy(), g2.numpy(), parts.numpy())
    return parts.sum(0).T


class EventCurrent(torch.autograd.Function):
    """x (..., in), weight (out, in) -> x @ weight^T by events (module docstring)."""

    @staticmethod
    def forward(ctx, x, weight):
        x2 = _rows(x)
        ctx.save_for_backward(x2, weight)
        ctx.shape = x.shape
        return _current_by_events(x2, weight).reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x2, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1]).contiguous()
        d_x = (g2 @ weight).reshape(ctx.shape) if ctx.needs_input_grad[0] else None
        d_w = _weight_grad_by_events(x2, g2).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return d_x, d_w


def weight_gradient(x: torch.Tensor, grad_current: torch.Tensor) -> torch.Tensor:
    """``dL/dW = grad_current^T x`` (out, in) over all (sample, step) rows, by events
    when x is sparse on CPU."""
    x2, g2 = _rows(x), grad_current.reshape(-1, grad_current.shape[-1]).contiguous()
    if g2.dtype in (torch.float32, torch.float64) and _events_apply(x2):
        return _weight_grad_by_events(x2, g2)
    return g2.T @ x2.to(g2.dtype)


def input_current(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` (x: (..., in), weight: (out, in)), by events when x is sparse
    on CPU; differentiable in both."""
    if weight.dtype == x.dtype and _events_apply(x):
        return EventCurrent.apply(x, weight)
    return x @ weight.T

