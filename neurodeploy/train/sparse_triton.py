"""The Triton kernels of the CUDA sparse backward (:mod:`neurodeploy.train.sparse_cuda`
describes them). A module of its own so that they can call each other (Triton resolves
a kernel's callees among its module's globals) while ``triton`` is still imported only
when the CUDA path is first used."""
import triton
import triton.language as tl


@triton.jit
def cuba_float_update(u, v, x, a, c, bias, th, HAS_BIAS: tl.constexpr):
    # one step of neuron.cuba_float_step (its cuba_float_charge, threshold and reset), op
    # by op (the kernels are compiled without FMA contraction) -> (u, v after reset, s,
    # v - threshold). Triton compiles only its own functions, so the step is written out
    # here once; tests/test_step_definitions.py holds it to cuba_float_step bit for bit
    u = a * u + x
    v = c * v + u
    if HAS_BIAS:
        v = v + bias
    vmt = v - th
    s = (vmt > 0).to(a.dtype)
    return u, v * (1.0 - s), s, vmt


@triton.jit
def forward_kernel(cur_ptr, bias_ptr, prm_ptr, spk_ptr, spk8_ptr, T, N,
                   HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    # spikes into spk_ptr (the layer's output) and, as uint8, into spk8_ptr (kept for
    # the backward: a quarter of the bytes)
    b = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(prm_ptr)
    c = tl.load(prm_ptr + 1)
    th = tl.load(prm_ptr + 2)
    scale = tl.load(prm_ptr + 3)
    height = tl.load(prm_ptr + 4)
    band = tl.load(prm_ptr + 5)
    u = tl.zeros([BLOCK], dtype=a.dtype)
    v = tl.zeros([BLOCK], dtype=a.dtype)
    bias = tl.zeros([BLOCK], dtype=a.dtype)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs, mask=mask, other=0.0)
    base = b * T * N
    for t in range(T):
        x = tl.load(cur_ptr + base + t * N + offs, mask=mask, other=0.0)
        u, v, s, vmt = cuba_float_update(u, v, x, a, c, bias, th, HAS_BIAS)
        tl.store(spk_ptr + base + t * N + offs, s, mask=mask)
        tl.store(spk8_ptr + base + t * N + offs, s.to(tl.uint8), mask=mask)
        # the band-truncated surrogate derivative (neuron.surrogate_derivative)
        q = scale * tl.abs(vmt) + 1.0
        sg = tl.where(tl.abs(vmt) < band, height / (q * q), 0.0)
        tl.store(cur_ptr + base + t * N + offs, sg, mask=mask)


@triton.jit
def recurrent_step_kernel(cur_ptr, rec_ptr, bias_ptr, prm_ptr, u_ptr, v_ptr, s_ptr, spk_ptr,
                          k, T, N, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
    # step k of a recurrent layer's forward, op by op as train.sparse.forward_active_entries:
    # x = cur[:, k] + rec, with rec = s[k - 1] @ W_rec^T from cuBLAS (the reference's
    # product); the state u, v, s (batch, N) updated in place, the spikes written, and
    # v - threshold left in place of cur[:, k]
    b = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(prm_ptr)
    c = tl.load(prm_ptr + 1)
    th = tl.load(prm_ptr + 2)
    at = (b * T + k) * N + offs
    st = b * N + offs
    x = tl.load(cur_ptr + at, mask=mask, other=0.0) + tl.load(rec_ptr + st, mask=mask, other=0.0)
    bias = tl.zeros([BLOCK], dtype=a.dtype)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs, mask=mask, other=0.0)
    u, v, s, vmt = cuba_float_update(tl.load(u_ptr + st, mask=mask, other=0.0),
                                     tl.load(v_ptr + st, mask=mask, other=0.0), x, a, c, bias,
                                     th, HAS_BIAS)
    tl.store(u_ptr + st, u, mask=mask)
    tl.store(v_ptr + st, v, mask=mask)
    tl.store(s_ptr + st, s, mask=mask)
    tl.store(spk_ptr + at, s, mask=mask)
    tl.store(cur_ptr + at, vmt, mask=mask)


@triton.jit
def scatter_active(row_start_ptr, active_ptr, sg_ptr, dst_ptr, first_row, last_row,
                   col_lo, col_hi, N, SC: tl.constexpr):
    # the active entries of the (sample, step) rows [first_row, last_row) whose neuron
    # is in [col_lo, col_hi): dst[(row - first_row) * N + neuron] = sg. ``active``
    # holds flat (sample, step, neuron) indices, sorted; row_start its CSR row pointers.
    # Positions in it are int32 (layer_backward checks the list is shorter than 2**31)
    lo = tl.load(row_start_ptr + first_row).to(tl.int32)
    hi = tl.load(row_start_ptr + last_row).to(tl.int32)
    for i in range(lo, hi, SC):
        k = i + tl.arange(0, SC)
        m = k < hi
        loc = tl.load(active_ptr + k, mask=m, other=0) - first_row * N
        j = loc % N
        keep = m & (j >= col_lo) & (j < col_hi)
        tl.store(dst_ptr + loc, tl.load(sg_ptr + k, mask=keep, other=0.0), mask=keep)


@triton.jit
def adjoint_kernel(grad_ptr, g_sb, g_st, spk_ptr, row_start_ptr, active_ptr, sg_ptr,
                   du_ptr, dbias_ptr, prm_ptr, b0, T, N,
                   BLOCK: tl.constexpr, SC: tl.constexpr):
    # du: this chunk's (samples, T, N) buffer. The program first writes its sample's
    # surrogate values there (zeros, then the active entries of its neurons), then
    # overwrites them with du going backward in time. grad: strided in sample and step
    # (an expanded gradient, e.g. of a sum over time, is not copied)
    bl = tl.program_id(0).to(tl.int64)
    b = b0 + bl
    col0 = tl.program_id(1) * BLOCK
    offs = col0 + tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(prm_ptr)
    c = tl.load(prm_ptr + 1)
    zero = tl.zeros([BLOCK], dtype=a.dtype)
    loc = du_ptr + bl * T * N + offs
    for t in range(T):
        tl.store(loc + t * N, zero, mask=mask)
    tl.debug_barrier()   # (global writes of this program are visible to it after a barrier)
    scatter_active(row_start_ptr, active_ptr, sg_ptr, du_ptr + bl * T * N, b * T, b * T + T,
                   col0, col0 + BLOCK, N, SC)
    tl.debug_barrier()
    spk = spk_ptr + b * T * N + offs
    grd = grad_ptr + b * g_sb + offs
    # step t's loads are issued one step ahead (they do not depend on the recursion)
    s = tl.load(spk + (T - 1) * N, mask=mask, other=0).to(a.dtype)   # any dtype (uint8)
    g = tl.load(grd + (T - 1) * g_st, mask=mask, other=0.0)
    sg = tl.load(loc + (T - 1) * N, mask=mask, other=0.0)
    dv = zero
    du = zero
    db = zero
    for k in range(T):
        t = T - 1 - k
        tn = tl.maximum(t - 1, 0)
        s_n = tl.load(spk + tn * N, mask=mask, other=0).to(a.dtype)
        g_n = tl.load(grd + tn * g_st, mask=mask, other=0.0)
        sg_n = tl.load(loc + tn * N, mask=mask, other=0.0)
        dv = c * (1.0 - s) * dv + g * sg
        du = dv + a * du
        db += dv
        tl.store(loc + t * N, du, mask=mask)
        s, g, sg = s_n, g_n, sg_n
    tl.store(dbias_ptr + b * N + offs, db, mask=mask)


@triton.jit
def adjoint_rec_kernel(grad_ptr, g_sb, g_st, spk_ptr, row_start_ptr, active_ptr, sg_ptr,
                       du_ptr, dv_ptr, dbias_ptr, wrec_ptr, prm_ptr, b0, B, T, N,
                       BS: tl.constexpr, BJ: tl.constexpr, BK: tl.constexpr,
                       SC: tl.constexpr):
    # a program owns BS samples and all N neurons. It first writes their surrogate
    # values into du (this chunk's buffer: zeros, then the active entries); du[t + 1]
    # and dv (in dv_ptr, zeroed) go through memory between steps, hence the barrier
    # per step
    first = tl.program_id(0) * BS
    lrows = first + tl.arange(0, BS)
    rmask = lrows < B
    brows = b0 + lrows.to(tl.int64)          # global sample index
    lbase = lrows.to(tl.int64) * T * N       # this chunk's du rows
    a = tl.load(prm_ptr)
    c = tl.load(prm_ptr + 1)
    for t in range(T):
        for jb in range(0, N, BJ):
            cols = jb + tl.arange(0, BJ)
            tl.store(du_ptr + lbase[:, None] + t * N + cols[None, :],
                     tl.zeros([BS, BJ], dtype=a.dtype), mask=rmask[:, None] & (cols < N)[None, :])
    tl.debug_barrier()
    g0 = b0 + first
    g1 = b0 + tl.minimum(first + BS, B)
    scatter_active(row_start_ptr, active_ptr, sg_ptr, du_ptr + first.to(tl.int64) * T * N,
                   g0.to(tl.int64) * T, g1.to(tl.int64) * T, 0, N, N, SC)
    tl.debug_barrier()
    for k in range(T):
        t = T - 1 - k
        has_next = k > 0
        for jb in range(0, N, BJ):
            cols = jb + tl.arange(0, BJ)
            m2 = rmask[:, None] & (cols < N)[None, :]
            rec = tl.zeros([BS, BJ], dtype=a.dtype)
            for kb in range(0, N, BK):
                ks = kb + tl.arange(0, BK)
                kmask = ks < N
                dn = tl.load(du_ptr + lbase[:, None] + (t + 1) * N + ks[None, :],
                             mask=(rmask[:, None] & kmask[None, :]) & has_next, other=0.0)
                w = tl.load(wrec_ptr + ks[:, None] * N + cols[None, :],
                            mask=kmask[:, None] & (cols < N)[None, :], other=0.0)
                rec += tl.sum(dn[:, :, None] * w[None, :, :], axis=1)
            du_next = tl.load(du_ptr + lbase[:, None] + (t + 1) * N + cols[None, :],
                              mask=m2 & has_next, other=0.0)
            idx = lbase[:, None] + t * N + cols[None, :]
            g = tl.load(grad_ptr + brows[:, None] * g_sb + t * g_st + cols[None, :],
                        mask=m2, other=0.0) + rec
            sg = tl.load(du_ptr + idx, mask=m2, other=0.0)
            s = tl.load(spk_ptr + brows[:, None] * T * N + t * N + cols[None, :], mask=m2,
                        other=0.0)
            state = brows[:, None] * N + cols[None, :]
            dv = tl.load(dv_ptr + state, mask=m2, other=0.0)
            dv = c * (1.0 - s) * dv + g * sg
            tl.store(dv_ptr + state, dv, mask=m2)
            tl.store(du_ptr + idx, dv + a * du_next, mask=m2)
            db = tl.load(dbias_ptr + state, mask=m2, other=0.0)
            tl.store(dbias_ptr + state, db + dv, mask=m2)
        tl.debug_barrier()

