"""The sparse backward of a CUBA-LIF layer in one compiled CPU pass (numba, imported
with this module, which :mod:`neurodeploy.train.sparse` imports lazily).

Same gradient definition as :mod:`neurodeploy.train.sparse` (its docstring); the
tests check it against the dense autograd reference and against the plain torch
implementation there, which is what runs when numba is not installed.

Work per sample, samples split across cores: the adjoint backward in time over
(step, neuron), elementwise (e at the active entries; du, the gradient of the
input currents; A's two entries per active entry, e at (t, j) and -e c^(t-r) at
the neuron's last spike r, merged per step), then ``dW += A @ Y`` neuron by
neuron with the sample's input trace Y, four trace rows per pass over a row of
dW. Cost: O(batch time out) elementwise plus O(nonzeros of A x in) multiply-adds;
transient memory per core: the sample's trace (time x in) and a copy of dW. The input
gradient: a GEMM ``du @ W`` after the pass, inside it for narrow layers, or, when the
input is another sparse layer's spikes, inside it at that layer's active entries only
(``lower_active``: one dot product of length out per entry).
"""
from __future__ import annotations

import numpy as np
import torch

from neurodeploy.train.neuron import cuba_float_charge

try:
    import numba
except ImportError:  # train.sparse falls back to its torch implementation
    numba = None


if numba is not None:
    @numba.njit(inline="always", fastmath={"reassoc", "contract"})
    def _axpy_rows(row, rows, ts, cs, cnt):  # pragma: no cover - compiled
        """row += sum_q cs[q] rows[ts[q]] over q < cnt, four rows per pass."""
        q = 0
        while q + 4 <= cnt:
            r0, r1, r2, r3 = rows[ts[q]], rows[ts[q + 1]], rows[ts[q + 2]], rows[ts[q + 3]]
            c0, c1, c2, c3 = cs[q], cs[q + 1], cs[q + 2], cs[q + 3]
            for i in range(row.size):
                row[i] += c0 * r0[i] + c1 * r1[i] + c2 * r2[i] + c3 * r3[i]
            q += 4
        while q < cnt:
            r0 = rows[ts[q]]
            c0 = cs[q]
            for i in range(row.size):
                row[i] += c0 * r0[i]
            q += 1

    @numba.njit(parallel=True, nogil=True, fastmath={"reassoc", "contract"})
    def _add_parts(parts_array):  # pragma: no cover - compiled
        """parts_array[0] += parts_array[1:] (rows split across cores)."""
        for j in numba.prange(parts_array.shape[1]):
            row = parts_array[0, j]
            for part in range(1, parts_array.shape[0]):
                src = parts_array[part, j]
                for i in range(row.size):
                    row[i] += src[i]

    @numba.njit(cache=True, nogil=True)
    def _group_by_sample(active, sg, b_all, n):  # pragma: no cover - compiled
        """Flat (t, b, j) indices (with their values sg, or sg empty) grouped by sample,
        keeping each sample's (t, j) order -> (offsets (b_all + 1), steps, neurons,
        values): sample b's entries are [offsets[b], offsets[b + 1]). Two passes (count,
        fill), each dividing once per (t, b) row of the sorted list (any order is
        decoded correctly; sorted is fast)."""
        n_act = active.size
        offsets = np.zeros(b_all + 1, np.int64)
        g_t = np.empty(n_act, np.int32)
        g_j = np.empty(n_act, np.int32)
        with_values = sg.size > 0
        g_sg = np.empty(n_act if with_values else 0, sg.dtype)
        fill = offsets[:-1]
        for fill_pass in range(2):
            if fill_pass == 1:
                for bb in range(b_all):
                    offsets[bb + 1] += offsets[bb]
                fill = offsets[:-1].copy()
            row_start, row_end, t_row, b_row = 0, 0, 0, 0
            for q in range(n_act):
                f = active[q]
                if f >= row_end or f < row_start:
                    r = f // n
                    row_start, row_end = r * n, r * n + n
                    t_row, b_row = r // b_all, r % b_all
                if fill_pass == 0:
                    offsets[b_row + 1] += 1
                else:
                    k = fill[b_row]
                    g_t[k] = t_row
                    g_j[k] = f - row_start
                    if with_values:
                        g_sg[k] = sg[q]
                    fill[b_row] = k + 1
        return offsets, g_t, g_j, g_sg

    @numba.njit(cache=True, nogil=True)
    def _is_sorted(a):  # pragma: no cover - compiled
        for q in range(1, a.size):
            if a[q] <= a[q - 1]:
                return False
        return True

    # One body on purpose (docs/sparse_backward.md, "Implementations": the same pass
    # in inlined pieces compiles slower). Reassociation lets LLVM vectorise the
    # recurrent dot products and fuse multiply-adds.
    @numba.njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})
    def _layer_backward(x, spikes, grad, active, sg, a, c, weight_rec_t, has_rec, need_dx, need_dw,
                        dx, d_w_parts, d_b_parts, d_wr_parts, weight, need_d_in, d_in,
                        need_lower, lower_active, weight_t):
        # pragma: no cover - compiled. need_d_in: also the input gradient
        # d_in[b, t] = du[b, t] @ weight here (narrow layers, where a GEMM call costs more).
        # need_lower: instead, d_in (zeroed here, per sample) only at the layer below's active
        # entries lower_active, d_in[b, t, i] = du[b, t] . weight_t[i] (weight_t = W^T)
        b_all, t_all, n = spikes.shape
        n_in = x.shape[2]
        zero = x.dtype.type(0.0)
        one = x.dtype.type(1.0)
        offsets, g_t, g_j, g_sg = _group_by_sample(active, sg, b_all, n)
        # the layer below's active entries (flat (t, b, i) over the input), grouped the
        # same way: with need_lower, the input gradient is computed there only
        l_offsets, l_t, l_i, _ = _group_by_sample(lower_active, sg[:0],
                                                  b_all if need_lower else 1, n_in)
        parts = d_b_parts.shape[0]
        for part in numba.prange(parts):
            # 1-D row views throughout: numba vectorises loops over them, not over
            # multi-dimensional indexing
            b0 = part * b_all // parts
            b1 = (part + 1) * b_all // parts
            sgd = np.zeros((t_all, n), x.dtype)   # surrogate derivative, 0 where inactive
            coef = np.zeros((t_all, n), x.dtype)  # A's entries for this sample: e and -e c^(t-r) merged
            y_buf = np.zeros((t_all if need_dw else 1, n_in), x.dtype)  # the sample's input trace Y
            yb_buf = np.zeros(t_all, x.dtype)
            yr_buf = np.zeros((t_all if has_rec and need_dw else 1, n), x.dtype)
            ts = np.zeros((n, t_all), np.int64)    # per neuron: steps with a nonzero of A
            cs = np.zeros((n, t_all), x.dtype)     # and its value
            counts = np.zeros(n, np.int64)
            e = np.zeros(n, x.dtype)
            dv = np.zeros(n, x.dtype)
            du = np.zeros(n, x.dtype)
            carry = np.zeros(n, x.dtype)          # sum of e c^(t'-t) since the next spike
            y = np.zeros(n_in, x.dtype)
            y2 = np.zeros(n_in, x.dtype)
            yr = np.zeros(n, x.dtype)
            yr2 = np.zeros(n, x.dtype)
            d_w = d_w_parts[part]
            d_b = d_b_parts[part]
            d_wr = d_wr_parts[part]
            d_w[:, :] = zero  # the buffers come uninitialised: each core zeroes its own
            d_b[:] = zero
            d_wr[:, :] = zero
            for bb in range(b0, b1):
                sgd[:, :] = zero
                for k in range(offsets[bb], offsets[bb + 1]):
                    sgd[g_t[k], g_j[k]] = g_sg[k]
                dv[:] = zero
                du[:] = zero
                carry[:] = zero
                lo = offsets[bb]
                ptr = offsets[bb + 1]   # the sample's active entries not yet reached
                if need_lower:
                    d_in[bb, :, :] = zero   # the input gradient is 0 off those entries
                    l_lo = l_offsets[bb]
                    l_ptr = l_offsets[bb + 1]   # and the layer below's
                # adjoint of the (u, v) filter, backward in time; detached reset
                for t in range(t_all - 1, -1, -1):
                    sg_t = sgd[t]
                    grad_t = grad[bb, t]
                    s_t = spikes[bb, t]
                    coef_t = coef[t]
                    if has_rec:
                        # e needs W_rec^T du[t + 1] at the active entries: the sample's
                        # entries of step t, walked from the end of its (t, j)-sorted
                        # list (not a test of every neuron at every step)
                        for j in range(n):
                            e[j] = zero
                        while ptr > lo and g_t[ptr - 1] == t:
                            ptr -= 1
                            j = g_j[ptr]
                            acc = zero
                            if t + 1 < t_all:
                                w_j = weight_rec_t[j]
                                for m in range(n):
                                    acc += du[m] * w_j[m]
                            e[j] = (grad_t[j] + acc) * g_sg[ptr]
                    else:
                        for j in range(n):
                            e[j] = grad_t[j] * sg_t[j]
                    # (spikes are 0/1; short loops over few arrays, so they vectorise)
                    for j in range(n):
                        dv_j = dv[j] * (c * (one - s_t[j])) + e[j]   # detached reset
                        dv[j] = dv_j
                        du[j] = dv_j + a * du[j]
                    for j in range(n):
                        # A's column (b, t): e, minus the running sum of later entries
                        # whose last spike is t; the sum restarts at each spike
                        k_j = carry[j] * c
                        s_j = s_t[j]
                        coef_t[j] = e[j] - k_j * s_j
                        carry[j] = k_j * (one - s_j) + e[j]
                    if need_dx:
                        dx_t = dx[bb, t]
                        for j in range(n):
                            dx_t[j] = du[j]
                    if need_lower:
                        d_in_t = d_in[bb, t]
                        while l_ptr > l_lo and l_t[l_ptr - 1] == t:
                            l_ptr -= 1
                            i = l_i[l_ptr]
                            acc = zero
                            for j in range(n):
                                acc += du[j] * weight_t[i, j]
                            d_in_t[i] = acc
                    elif need_d_in:
                        d_in_t = d_in[bb, t]
                        d_in_t[:] = zero
                        for j in range(n):
                            du_j = du[j]
                            if du_j != zero:
                                w_j = weight[j]
                                for i in range(n_in):
                                    d_in_t[i] += du_j * w_j[i]
                if not need_dw:
                    continue
                # the input traces of this sample, forward in time
                y[:] = zero
                y2[:] = zero
                yr[:] = zero
                yr2[:] = zero
                yb = zero
                for t in range(t_all):
                    x_t = x[bb, t]
                    y_t = y_buf[t]
                    for i in range(n_in):
                        y[i] = a * y[i] + x_t[i]
                        y2[i] = c * y2[i] + y[i]
                        y_t[i] = y2[i]
                    yb = c * yb + one
                    yb_buf[t] = yb
                    if has_rec:
                        yr_t = yr_buf[t]
                        if t > 0:
                            s_prev = spikes[bb, t - 1]
                            for m in range(n):
                                yr[m] = a * yr[m] + s_prev[m]
                        else:
                            for m in range(n):
                                yr[m] = a * yr[m]
                        for m in range(n):
                            yr2[m] = c * yr2[m] + yr[m]
                            yr_t[m] = yr2[m]
                # dW[j] += sum_t A[j, (b, t)] Y[b, t], neuron by neuron; four trace rows
                # per pass over the row of dW (it stays in L1, the trace in L2)
                # A's nonzeros of this sample, neuron by neuron (one contiguous pass)
                counts[:] = 0
                for t in range(t_all):
                    coef_t = coef[t]
                    for j in range(n):
                        cf = coef_t[j]
                        if cf != zero:
                            k = counts[j]
                            ts[j, k] = t
                            cs[j, k] = cf
                            counts[j] = k + 1
                for j in range(n):
                    cnt = counts[j]
                    if cnt == 0:
                        continue
                    ts_j = ts[j]
                    cs_j = cs[j]
                    acc_b = zero
                    for q in range(cnt):
                        acc_b += cs_j[q] * yb_buf[ts_j[q]]
                    d_b[j] += acc_b
                    _axpy_rows(d_w[j], y_buf, ts_j, cs_j, cnt)
                    if has_rec:
                        _axpy_rows(d_wr[j], yr_buf, ts_j, cs_j, cnt)
        # the cores' partial sums into part 0
        _add_parts(d_w_parts)
        _add_parts(d_wr_parts)
        for part in range(1, parts):
            for j in range(n):
                d_b_parts[0, j] += d_b_parts[part, j]

if numba is not None:
    # the training step's integration, compiled from its one definition (not cached on
    # disk: numba's cache of a caller does not notice a change in another module)
    _cuba_float_charge = numba.njit(inline="always")(cuba_float_charge)

    @numba.njit(inline="always")  # no fastmath: IEEE order, as torch
    def _cuba_float_update(u, v, x, keep_u, keep_v, bias_j, has_bias, threshold, zero, one):
        # pragma: no cover - compiled; one neuron's step of neuron.cuba_float_step (as
        # train.sparse.forward_active_entries) -> (u, v after reset, s, v - threshold)
        if has_bias:
            u, v = _cuba_float_charge(x, u, v, keep_u, keep_v, bias_j)
        else:
            u, v = _cuba_float_charge(x, u, v, keep_u, keep_v)
        m = v - threshold
        s = one if m > zero else zero
        return u, v * (one - s), s, m

    @numba.njit(parallel=True, nogil=True)  # no fastmath: IEEE order, as torch
    def _forward_loop(current, bias, has_bias, keep_u, keep_v, threshold, spikes,
                      v_minus_threshold):
        # pragma: no cover - compiled; the time loop of train.sparse.forward_active
        b_all, t_all, n = current.shape
        zero = current.dtype.type(0.0)
        one = current.dtype.type(1.0)
        for bb in numba.prange(b_all):
            u = np.zeros(n, current.dtype)
            v = np.zeros(n, current.dtype)
            for t in range(t_all):
                cur = current[bb, t]
                s_out = spikes[bb, t]
                m_out = v_minus_threshold[t, bb]
                for j in range(n):
                    u[j], v[j], s_out[j], m_out[j] = _cuba_float_update(
                        u[j], v[j], cur[j], keep_u, keep_v, bias[j if has_bias else 0],
                        has_bias, threshold, zero, one)

    @numba.njit(nogil=True)  # no fastmath: IEEE order, as torch
    def _recurrent_step(current, k, rec, bias, has_bias, keep_u, keep_v, threshold, u, v, s,
                        spikes, v_minus_threshold):
        # pragma: no cover - compiled; step k of train.sparse.forward_active_entries with
        # the recurrent input rec = s[k - 1] @ W_rec^T (torch's product)
        b_all, t_all, n = current.shape
        zero = current.dtype.type(0.0)
        one = current.dtype.type(1.0)
        for bb in range(b_all):
            cur = current[bb, k]
            r = rec[bb]
            u_b, v_b, s_b = u[bb], v[bb], s[bb]
            s_out = spikes[bb, k]
            m_out = v_minus_threshold[k, bb]
            for j in range(n):
                u_b[j], v_b[j], s_b[j], m_out[j] = _cuba_float_update(
                    u_b[j], v_b[j], cur[j] + r[j], keep_u, keep_v, bias[j if has_bias else 0],
                    has_bias, threshold, zero, one)
                s_out[j] = s_b[j]


def forward_active(x_in: torch.Tensor, weight: torch.Tensor, bias, p, surrogate,
                   weight_rec: "torch.Tensor | None" = None):
    """:func:`neurodeploy.train.sparse.forward_active` on CPU tensors with the time loop
    compiled: the same float operations in the same order (spikes bit-identical to the
    dense reference). A recurrent layer's per-step product ``s[t-1] @ W_rec^T`` stays
    torch's (its rounding is the reference's), the rest of each step is compiled. None
    without numba."""
    if numba is None:
        return None
    from neurodeploy.train.events import input_current
    from neurodeploy.train.neuron import in_band, surrogate_derivative
    dt = x_in.dtype
    np_dt = np.float64 if dt == torch.float64 else np.float32
    current = input_current(x_in, weight).contiguous()
    b, t, n = current.shape
    spikes = torch.empty_like(current)
    v_minus_threshold = torch.empty((t, b, n), dtype=dt)
    bias_np = bias.detach().contiguous().numpy() if bias is not None else np.zeros(1, np_dt)
    keep_u, keep_v = np_dt(1.0 - p.current_decay), np_dt(1.0 - p.voltage_decay)
    if weight_rec is None:
        _forward_loop(current.numpy(), bias_np, bias is not None, keep_u, keep_v,
                      np_dt(p.threshold), spikes.numpy(), v_minus_threshold.numpy())
    else:
        wr_t = weight_rec.detach().T
        u, v, s = (torch.zeros((b, n), dtype=dt) for _ in range(3))
        args = (current.numpy(), bias_np, bias is not None, keep_u, keep_v, np_dt(p.threshold),
                u.numpy(), v.numpy(), s.numpy(), spikes.numpy(), v_minus_threshold.numpy())
        for k in range(t):
            rec = s @ wr_t   # as the reference: x + s @ weight_rec.T
            _recurrent_step(args[0], k, rec.numpy(), *args[1:])
    flat = v_minus_threshold.reshape(-1)
    active = torch.nonzero(in_band(flat, surrogate)).squeeze(1)
    return spikes, active, surrogate_derivative(flat[active], surrogate)


#: layers with at most this many neurons compute their input gradient inside the pass
NARROW_LAYER = 32


def scratch_bytes(t: int, n: int, n_in: int, itemsize: int, parts: "int | None" = None,
                  recurrent: bool = False, n_active: int = 0, batch: int = 0,
                  n_below: int = 0) -> int:
    """Bytes of the compiled pass's scratch arrays (numpy, allocated inside the kernel,
    so invisible to torch's memory profiling) for a layer of n neurons with n_in
    inputs over t steps, weight gradient wanted: per core the sample's trace Y
    (t x n_in), three (t x n) arrays (four if recurrent: the trace of its own spikes),
    the step indices (t x n int64) and a few vectors; once, the grouped active entries
    (two int32 and one value per entry) and the batch's offsets, and the layer below's
    (``n_below`` entries when the input gradient is computed at them: two int32 each)."""
    if parts is None:
        parts = numba.get_num_threads() if numba is not None else 1
    per_core = ((t * n_in + (4 if recurrent else 3) * t * n + 6 * n + 2 * n_in + t) * itemsize
                + t * n * 8)
    return (parts * per_core + n_active * (2 * 4 + itemsize) + n_below * 2 * 4
            + 4 * (batch + 1) * 8)


def fused_layer_backward(x_in: torch.Tensor, spikes: torch.Tensor, grad_spikes: torch.Tensor,
                         active: torch.Tensor, sg: torch.Tensor, a: float, c: float,
                         weight_rec: "torch.Tensor | None", need_dx: bool, need_dw: bool,
                         weight: "torch.Tensor | None" = None,
                         lower_active: "torch.Tensor | None" = None):
    """The sparse layer backward (train.sparse docstring) in one compiled pass, the
    samples split across cores. Per sample: the adjoint backward in time (e at the
    active entries, du, and A's entries e and -e c^(t-r) merged per step), then
    dW += A @ Y neuron by neuron with the sample's input trace Y (never stored for the
    whole batch). need_dw: any parameter gradient (weight, bias, weight_rec; one pass).
    With ``weight`` given (and need_dx), the first item is the input gradient
    ``du @ weight`` (B, T, in) instead of du: computed in the pass for narrow layers
    (out <= NARROW_LAYER), by a GEMM otherwise. With ``lower_active`` as well (the flat
    (t, b, i) indices of the active entries of the sparse layer whose spikes are this
    layer's input), the input gradient is computed in the pass at those entries only,
    0 elsewhere: the layer below reads nothing else (O(its active entries x out)
    instead of a GEMM; the paper scatters into the layer below's active entries).
    Returns (du or du @ weight, d_w (N, in) or None, d_b (N,), d_w_rec or None), or None
    when numba is not installed."""
    if numba is None:
        return None
    dt = x_in.dtype
    np_dt = np.float64 if dt == torch.float64 else np.float32
    b, t, n = spikes.shape
    n_in = x_in.shape[2]
    parts = max(1, min(b, numba.get_num_threads()))
    has_rec = weight_rec is not None

    def buf(*shape):  # torch-owned, so torch's memory accounting sees it; zeroed in the pass
        return torch.empty(shape, dtype=dt).numpy()

    # (a narrow layer's dense in-pass product is cheaper than its scattered dots)
    need_lower = (need_dx and weight is not None and lower_active is not None
                  and n > NARROW_LAYER)
    in_pass = need_dx and weight is not None and n <= NARROW_LAYER and not need_lower
    dx = buf(b, t, n) if need_dx and not (in_pass or need_lower) else buf(1, 1, 1)
    d_in = buf(b, t, n_in) if in_pass or need_lower else buf(1, 1, 1)
    w_np = weight.detach().contiguous().numpy() if in_pass else buf(1, 1)
    w_t = weight.detach().t().contiguous().numpy() if need_lower else buf(1, 1)
    lower = torch.zeros(0, dtype=torch.int64)
    if need_lower:
        lower = lower_active
        if not _is_sorted(lower.numpy()):
            lower = torch.sort(lower)[0]   # walked in each sample's (t, i) order
    d_w = buf(parts, n, n_in) if need_dw else buf(parts, 1, 1)
    d_b = buf(parts, n)
    d_wr = buf(parts, n, n) if has_rec and need_dw else buf(parts, 1, 1)
    wr_t = weight_rec.detach().t().contiguous().numpy() if has_rec else buf(1, 1)
    if has_rec and not _is_sorted(active.numpy()):
        # the recurrent pass walks each sample's entries in (t, j) order
        active, order = torch.sort(active)
        sg = sg[order]
    _layer_backward(x_in.detach().contiguous().numpy(), spikes.contiguous().numpy(),
                    grad_spikes.contiguous().numpy(), active.contiguous().numpy(),
                    sg.contiguous().numpy(), np_dt(a), np_dt(c), wr_t, has_rec,
                    need_dx and not (in_pass or need_lower), need_dw, dx, d_w, d_b, d_wr, w_np,
                    in_pass, d_in, need_lower, lower.contiguous().numpy(), w_t)
    if in_pass or need_lower:
        first = torch.from_numpy(d_in)
    elif need_dx:
        du = torch.from_numpy(dx)
        first = du @ weight if weight is not None else du
    else:
        first = None
    return (first,
            torch.from_numpy(d_w[0]) if need_dw else None,
            torch.from_numpy(d_b[0]),
            torch.from_numpy(d_wr[0]) if has_rec and need_dw else None)
