"""Compiled CPU loops for the sparse backward (numba, imported lazily): the doubly
filtered input trace and the sparse product dW = A @ Y, each split across cores.
Same arithmetic as :func:`neurodeploy.train.sparse.filtered_trace` and the CSR
product in :func:`neurodeploy.train.sparse.sparse_weight_gradient`; checked against
them and against the dense reference by the tests."""
from __future__ import annotations

import numpy as np
import torch

_kernels = None


def _build():
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True, fastmath=False)
    def trace(x, a, c, out):  # pragma: no cover - compiled
        b, t, n = x.shape
        for bb in numba.prange(b):
            y = np.zeros(n, dtype=x.dtype)
            acc = np.zeros(n, dtype=x.dtype)
            for k in range(t):
                for i in range(n):
                    y[i] = a * y[i] + x[bb, k, i]
                    acc[i] = c * acc[i] + y[i]
                    out[bb, k, i] = acc[i]

    @numba.njit(parallel=True, cache=True, nogil=True, fastmath=False)
    def csr_product(d_w, crow, cols, vals, y):  # pragma: no cover - compiled
        rows, n = d_w.shape
        for j in numba.prange(rows):
            for k in range(crow[j], crow[j + 1]):
                col = cols[k]
                v = vals[k]
                for i in range(n):
                    d_w[j, i] += v * y[col, i]

    return trace, csr_product


def kernels():
    """(trace, csr_product) compiled, or None without numba."""
    global _kernels
    if _kernels is None:
        try:
            _kernels = _build()
        except ImportError:
            _kernels = False
    return _kernels or None


def filtered_trace_cpu(x: torch.Tensor, a: float, c: float) -> torch.Tensor:
    k = kernels()
    if k is None or x.is_cuda or x.requires_grad:
        from neurodeploy.train.sparse import filtered_trace
        return filtered_trace(x, a, c)
    xn = x.detach().contiguous().numpy()
    out = np.empty_like(xn)
    k[0](xn, xn.dtype.type(a), xn.dtype.type(c), out)
    return torch.from_numpy(out)


def csr_product_cpu(d_w: torch.Tensor, crow, cols, vals, y: torch.Tensor) -> bool:
    """d_w += A @ y in place for CSR (crow, cols, vals); False when not available."""
    k = kernels()
    if k is None or d_w.is_cuda:
        return False
    k[1](d_w.numpy(), crow.numpy(), cols.numpy(), vals.to(d_w.dtype).numpy(), y.contiguous().numpy())
    return True
