"""Triton kernels for the sparse backward on CUDA (see :mod:`neurodeploy.train.sparse`).

On a GPU the dense BPTT backward is slow because of its launch count (autograd walks
~10 nodes per layer and step, each a tiny kernel), not its arithmetic. So here each
time loop is one kernel: a program owns (one sample, a block of neurons), or (a few
samples, all neurons) for a recurrent layer, and walks over time in registers.

* ``forward``: the CUBA-LIF forward of a feed-forward layer from the input currents
  (``x_in @ W.T`` stays a cuBLAS matmul), writing spikes; the same arithmetic in the
  same order as
  neuron.cuba_float_step, with FMA contraction disabled, so spikes match torch's; in
  place of the currents it leaves the band-truncated surrogate derivative, which is
  compacted once (``torch.nonzero``). Saved for the backward: the spikes (as uint8,
  written by the same kernel, so the float32 output is not kept), the active
  indices (flat, sorted), their surrogate values and the CSR row starts of each
  (sample, step) row in that list.
* ``adjoint`` / ``adjoint_rec``: the backward over time of the (u, v) filter. Each
  program first writes its samples' surrogate values into its part of the ``du``
  buffer (zeros, then its active entries, found through the row starts: no separate
  zero-fill or scatter launches). The error ``e = G sg`` is nonzero only at the active
  entries; ``dv[t] = e[t] + c (1 - s[t]) dv[t+1]`` and ``du[t] = dv[t] + a du[t+1]``
  run for every (sample, neuron), each step's loads issued one step ahead, and ``du``
  (the gradient of the layer's input current) overwrites the buffer. The recurrent
  kernel adds ``W_rec^T du[t+1]`` to G in the same pass. ``G`` may be an expanded
  view (the gradient of a sum over time is not copied).

From ``du``, ``dL/dW = du^T x_in`` (and ``dL/dW_rec = du[t]^T s[t-1]``,
``dL/ds_in = du W``) are single cuBLAS products, and the bias gradient is the sum of
``dv`` over time, kept per program. Where ``x_in`` is another feed-forward sparse
layer's output, the layer keeps that layer's uint8 copy of it instead (converted per
chunk for ``du^T x_in``), so the float spikes between layers are not held until the
backward. This is the same gradient as the CPU paths'
``A @ Y`` (``du`` is the filtered sum of the active errors); on the GPU the dense
products over ``du`` cost less time and memory than building the sparse ``A`` and the
input trace ``Y`` (measured: benchmarks/results/sparse_backward_cuda_h100_csr_product.json
against sparse_backward_cuda_h100.json; docs/sparse_backward.md).
The kernels themselves are in :mod:`neurodeploy.train.sparse_triton`. A recurrent
layer's forward needs a matmul with W_rec per
step that must round as torch's does, so that product stays cuBLAS's, and one kernel
per step does the rest of the step. Triton is imported only
when these kernels are first used; ``TRITON_INTERPRET=1`` runs them on CPU tensors
(tests).
"""
from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=None)
def _kernels():
    try:
        from neurodeploy.train import sparse_triton
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError("the CUDA sparse backward needs triton (pip install triton); "
                          f"it could not be imported: {err}") from err
    return sparse_triton


BLOCK = 128
#: recurrent adjoint: samples per program, and the neuron blocks of its W_rec product
REC_SAMPLES, REC_BLOCK_J, REC_BLOCK_K = 1, 256, 16
#: the backward's (batch, time, neuron) buffer ``du`` is built at most this large (bytes):
#: larger layers run in batch chunks (bounds the transient memory; each chunk costs a
#: few more launches)
CHUNK_BYTES = 32 << 20
#: the same for a recurrent layer, whose adjoint is a chain of T dependent steps per
#: sample (latency-bound): each chunk costs the whole chain again
REC_CHUNK_BYTES = 64 << 20
#: active entries a backward program reads per iteration when it writes its samples'
#: surrogate values into its part of the ``du`` buffer
SCATTER_BLOCK = 128


def _launch(kernel, grid, *args, **meta):
    # the forward: no FMA contraction keeps its rounding equal to torch's separate ops
    # (a compile option of the CUDA backend; the interpreter ignores it)
    return kernel[grid](*args, **meta, enable_fp_fusion=False)


@functools.lru_cache(maxsize=256)
def _params(dtype, device, *values):
    # cached: a fresh host-to-device copy per launch would wait for the GPU each time
    return torch.tensor(values, dtype=dtype, device=device)


def _grid(b, n):
    return (b, (n + BLOCK - 1) // BLOCK)


class TritonKernels:
    """The CUDA implementation behind :class:`neurodeploy.train.sparse.SparseCubaFunction`:
    ``forward_active`` (active indices in (batch, time, neuron) order) and
    ``layer_backward`` (the whole backward of the layer). The spikes it keeps for the
    backward are its own (uint8 for a feed-forward layer), not the layer's output."""

    SAVES_OWN_SPIKES = True
    #: layer_backward takes ``x_in`` as uint8 (the layer below's copy of its spikes)
    TAKES_UINT8_INPUT = True

    @staticmethod
    def forward_active(x_in, weight, bias, weight_rec, p, surrogate):
        """-> (spikes, active, sg, row_start, saved_spikes): ``active`` the flat (sample,
        step, neuron) indices of the active entries, sorted; ``row_start`` (batch * time
        + 1, int64) where each (sample, step) row's entries start in it (CSR row
        pointers); ``saved_spikes`` the spikes the backward reads (uint8 for a
        feed-forward layer, a quarter of the output's bytes)."""
        k = _kernels()
        if weight_rec is not None:
            return TritonKernels._forward_recurrent(x_in, weight, bias, weight_rec, p, surrogate)
        current = (x_in @ weight.T).contiguous()
        b, t, n = current.shape
        spikes = torch.empty_like(current)
        spikes8 = torch.empty(current.shape, dtype=torch.uint8, device=current.device)
        prm = _params(current.dtype, current.device, 1.0 - p.current_decay,
                      1.0 - p.voltage_decay, p.threshold, surrogate.scale, surrogate.height,
                      surrogate.band)
        bias_arg = bias.contiguous() if bias is not None else prm
        _launch(k.forward_kernel, _grid(b, n), current, bias_arg, prm, spikes, spikes8, t, n,
                HAS_BIAS=bias is not None, BLOCK=BLOCK)
        # the kernel left the surrogate derivative in place of the currents: nonzero
        # exactly at the active entries (it is > 0 inside the band)
        flat = current.view(-1)
        active = torch.nonzero(flat).squeeze(1)
        return spikes, active, flat[active], _row_start(active, b * t, n), spikes8

    @staticmethod
    def _forward_recurrent(x_in, weight, bias, weight_rec, p, surrogate):
        """A recurrent layer's forward: per step, the product ``s[k-1] @ W_rec^T`` by
        cuBLAS (it must round as the reference's does) and one kernel for the rest of
        the step (in place of ~10 torch ops)."""
        from neurodeploy.train.neuron import in_band, surrogate_derivative
        k = _kernels()
        current = (x_in @ weight.T).contiguous()
        b, t, n = current.shape
        spikes = torch.empty_like(current)
        u, v, s = (current.new_zeros(b, n) for _ in range(3))
        prm = _params(current.dtype, current.device, 1.0 - p.current_decay,
                      1.0 - p.voltage_decay, p.threshold)
        bias_arg = bias.contiguous() if bias is not None else prm
        wr_t = weight_rec.T
        for step in range(t):
            rec = s @ wr_t   # as the reference: x + s @ weight_rec.T
            _launch(k.recurrent_step_kernel, _grid(b, n), current, rec, bias_arg, prm, u, v, s,
                    spikes, step, t, n, HAS_BIAS=bias is not None, BLOCK=BLOCK)
        # v - threshold is now in place of the currents; active entries in (B, T, N) order
        flat = current.view(-1)
        active = torch.nonzero(in_band(flat, surrogate)).squeeze(1)
        sg = surrogate_derivative(flat[active], surrogate)
        return spikes, active, sg, _row_start(active, b * t, n), spikes

    @staticmethod
    def layer_backward(x_in, weight, weight_rec, _spikes, active, sg, row_start, spikes,
                       grad_spikes, p, need_dx, need_w, need_b, need_wr):
        """-> (dL/dx_in, dL/dW, dL/dbias, dL/dW_rec), each None unless asked for. Runs
        over batch chunks whose ``du`` buffer is at most CHUNK_BYTES (REC_CHUNK_BYTES for
        a recurrent layer). ``grad_spikes`` may be strided in sample and step (e.g. the
        expanded gradient of a sum over time), not in neurons. ``spikes``: those kept by
        :meth:`forward_active` (the layer's output is not kept). ``x_in`` may be uint8
        (0/1 spikes, the layer below's copy): each chunk's rows are converted for the
        weight gradient's product, before ``dL/dx_in`` is allocated, so that the
        converted copy and ``dL/dx_in`` are not held together (one chunk)."""
        k = _kernels()
        b, t, n = spikes.shape
        if active.numel() >= 2 ** 31:   # the kernels index the active list in int32
            raise ValueError(f"sparse backward: {active.numel()} active entries in one layer, "
                             "more than the CUDA kernels index (2**31); use a smaller batch")
        if grad_spikes.stride(2) != 1:
            grad_spikes = grad_spikes.contiguous()
        g_sb, g_st = grad_spikes.stride(0), grad_spikes.stride(1)
        x_flat = x_in.reshape(b * t, -1)
        dtype, device = sg.dtype, sg.device
        prm = _params(dtype, device, 1.0 - p.current_decay, 1.0 - p.voltage_decay)
        limit = CHUNK_BYTES if weight_rec is None else REC_CHUNK_BYTES
        chunks = triton_cdiv(b * t * n * sg.element_size(), max(1, limit))
        rows = triton_cdiv(b, min(b, chunks))   # equal chunks
        d_x = d_w = d_wr = None
        if weight_rec is None:   # written whole by the kernel
            dbias, dv = torch.empty(b, n, dtype=dtype, device=device), None
        else:                    # accumulated by the kernel
            dbias = torch.zeros(b, n, dtype=dtype, device=device)
            dv = torch.zeros(b, n, dtype=dtype, device=device)
            w_rec = weight_rec.contiguous()
            bj = min(REC_BLOCK_J, max(16, 1 << (n - 1).bit_length()))
        for b0 in range(0, b, rows):
            b1 = min(b, b0 + rows)
            # written whole by the kernel, from the compacted active entries (no scatter)
            du = torch.empty(b1 - b0, t, n, dtype=dtype, device=device)
            if weight_rec is None:
                k.adjoint_kernel[_grid(b1 - b0, n)](
                    grad_spikes, g_sb, g_st, spikes, row_start, active, sg, du, dbias, prm,
                    b0, t, n, BLOCK=BLOCK, SC=SCATTER_BLOCK)
            else:
                k.adjoint_rec_kernel[(triton_cdiv(b1 - b0, REC_SAMPLES),)](
                    grad_spikes, g_sb, g_st, spikes, row_start, active, sg, du, dv, dbias,
                    w_rec, prm, b0, b1 - b0, t, n,
                    BS=REC_SAMPLES, BJ=bj, BK=min(REC_BLOCK_K, bj), SC=SCATTER_BLOCK)
            flat = du.view(-1, n)
            if need_w:
                xs = x_flat[b0 * t:b1 * t]
                if xs.dtype != dtype:   # uint8 spikes: exact in any float type
                    xs = xs.to(dtype)
                d_w = flat.T @ xs if d_w is None else d_w.addmm_(flat.T, xs)
                del xs
            if need_dx:   # 2-d product straight into d_x (a 3-d matmul with out= copies)
                if d_x is None:
                    d_x = grad_spikes.new_empty(b, t, weight.shape[1])
                torch.mm(flat, weight, out=d_x[b0:b1].view(-1, weight.shape[1]))
            if need_wr:
                d_wr = _recurrent_weight_grad(du, spikes[b0:b1], d_wr)
            del du, flat   # before the next chunk's buffer is allocated
        d_b = dbias.sum(0) if need_b else None
        return d_x, d_w, d_b, d_wr


def _row_start(active, rows, n):
    """CSR row pointers of sorted flat indices over ``rows`` rows of ``n``: entries of
    row r are active[row_start[r]:row_start[r + 1]]."""
    bounds = torch.arange(0, (rows + 1) * n, n, dtype=active.dtype, device=active.device)
    return torch.searchsorted(active, bounds)


def _recurrent_weight_grad(du, spikes, acc):
    """acc + sum over samples and t >= 1 of du[t]^T s[t-1]: the flat product of rows
    r and r - 1, less the pairs that cross from one sample's last step to the next
    sample's first (no copies of the (batch, time, neuron) tensors)."""
    b, t, n = du.shape
    flat_du, flat_s = du.reshape(b * t, n), spikes.reshape(b * t, n)
    part = flat_du[1:].T @ flat_s[:-1]
    if b > 1:
        part -= du[1:, 0].T @ spikes[:-1, -1]
    return part if acc is None else acc.add_(part)


def triton_cdiv(a, b):
    return (a + b - 1) // b
