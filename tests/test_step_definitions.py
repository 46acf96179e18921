"""Each neuron step is defined once; the compiled and kernel forms that must exist
beside a definition are held to it bit for bit here.

- the integer CUBA-LIF step, :func:`neurodeploy.train.fixedpoint.cuba_step`, and its
  compiled twin, the simulator's numba loop (:func:`neurodeploy.fixedpoint.cuba_run`);
- the float CUBA-LIF step of training, :func:`neurodeploy.train.neuron.cuba_float_step`
  (its integration :func:`~neurodeploy.train.neuron.cuba_float_charge`), which numba
  compiles for the CPU sparse path, and the Triton kernels' one copy of it.

(The integer step itself is compared with Lava's ``PyLifModelBitAcc`` in test_sim_lava.)
"""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy import fixedpoint as fx
from neurodeploy.train.neuron import (
    CubaFloatParameters,
    CubaFloatState,
    SurrogateParameters,
    cuba_float_step,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- integer step: the compiled loop against cuba_step ------------------------------------

def _neuron_field(rng, lo, hi, per_neuron, n):
    if per_neuron == "layer":
        return int(rng.integers(lo, hi + 1))
    m = n if per_neuron == "neuron" else n // 3   # one value per channel of 3 positions
    return tuple(int(v) for v in rng.integers(lo, hi + 1, m))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), per_neuron=st.sampled_from(["layer", "neuron", "channel"]),
       delayed=st.booleans(), scale=st.sampled_from([1, 3, 64]), with_bias=st.booleans(),
       extreme=st.booleans())
def test_compiled_cuba_loop_is_bit_identical_to_cuba_step(seed, per_neuron, delayed, scale,
                                                          with_bias, extreme):
    """cuba_run (numba) and cuba_step (torch) give the same spikes and u, v at every
    step: layer, per-neuron and per-channel fields over their whole 12/17-bit ranges,
    a start state anywhere in the 24-bit registers, input large enough to wrap u and
    saturate v, a bias, the one-step synaptic delay, a scaled input and resets."""
    rng = np.random.default_rng(seed)
    steps, n = 30, 12
    p = fx.CubaParameters(_neuron_field(rng, *fx.CURRENT_DECAY_RANGE, per_neuron, n),
                          _neuron_field(rng, *fx.VOLTAGE_DECAY_RANGE, per_neuron, n),
                          _neuron_field(rng, 0, 3000 if not extreme else fx.THRESHOLD_RANGE[1],
                                        per_neuron, n))
    top = (1 << 15) if extreme else 400
    a = rng.integers(-top, top, (steps, n))
    a_first = rng.integers(-top, top, n) if delayed else None
    bias = rng.integers(*fx.BIAS_RANGE, n) if with_bias else None
    reset = rng.random(steps) < 0.1
    u0 = rng.integers(-fx.STATE_MAX + 1, fx.STATE_MAX, n)
    v0 = rng.integers(-fx.VOLTAGE_LIMIT, fx.VOLTAGE_LIMIT + 1, n)

    u, v = u0.copy(), v0.copy()
    spikes, (u_end, v_end), u_rec, v_rec = fx.cuba_run(a, p, bias, reset, state=(u, v), record=True,
                                                       a_first=a_first, scale=scale)

    fed = np.concatenate([a_first[None], a[:-1]]) if delayed else a
    state = fx.CubaState(torch.from_numpy(u0), torch.from_numpy(v0))
    b = None if bias is None else torch.from_numpy(bias)
    for k in range(steps):
        if reset[k]:
            state = fx.cuba_initial_state((n,))
        s, state = fx.cuba_step(torch.from_numpy(fed[k] * scale), state, p, b)
        assert np.array_equal(s.numpy(), spikes[k].astype(bool)), k
        assert np.array_equal(state.current.numpy(), u_rec[k]), k
        assert np.array_equal(state.voltage.numpy(), v_rec[k]), k
    assert np.array_equal(u_end, state.current.numpy()) and np.array_equal(v_end, state.voltage.numpy())


def test_cuba_run_without_numba_names_the_missing_dependency(monkeypatch):
    from neurodeploy.errors import MissingDependencyError
    monkeypatch.setattr(fx, "compiled_cuba_steps", lambda: None)
    with pytest.raises(MissingDependencyError, match="numba"):
        fx.cuba_run(np.zeros((2, 3), np.int64), fx.CubaParameters(1, 0, 1), None, np.zeros(2, bool))


# --- float step: numba's compiled form against cuba_float_step ----------------------------

def _float_operands(dtype, seed, size=400):
    """States, inputs and biases of mixed magnitudes (no two operations that a fused
    multiply-add or a reordering would round alike)."""
    g = torch.Generator().manual_seed(seed)
    mag = torch.pow(10.0, torch.empty(4, size).uniform_(-3, 1, generator=g))
    sign = torch.where(torch.rand(4, size, generator=g) < 0.5, -1.0, 1.0)
    u, v, x, bias = (mag * sign).to(dtype)
    return u, v, x, bias


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("with_bias", [True, False])
def test_compiled_float_step_is_bit_identical_to_cuba_float_step(dtype, with_bias):
    """The CPU sparse path's compiled step (numba, from cuba_float_charge) gives the
    torch step's spikes, u, v and v - threshold bit for bit."""
    sparse_cpu = pytest.importorskip("neurodeploy.train.sparse_cpu")
    if sparse_cpu.numba is None:
        pytest.skip("numba is not installed")
    np_dt = np.float64 if dtype == torch.float64 else np.float32
    p = CubaFloatParameters(current_decay=0.3137, voltage_decay=0.0713, threshold=0.917)
    u, v, x, bias = _float_operands(dtype, 1)
    s_ref, (u_ref, v_ref) = cuba_float_step(x, CubaFloatState(u, v), p, SurrogateParameters(),
                                            bias if with_bias else None)
    # the threshold's margin as the sparse forward computes it (before the reset)
    v_pre = (1.0 - p.voltage_decay) * v + ((1.0 - p.current_decay) * u + x)
    if with_bias:
        v_pre = v_pre + bias
    zero, one = np_dt(0.0), np_dt(1.0)
    keep_u, keep_v, th = np_dt(1.0 - p.current_decay), np_dt(1.0 - p.voltage_decay), np_dt(p.threshold)
    for j in range(u.numel()):
        uj, vj, sj, mj = sparse_cpu._cuba_float_update(
            np_dt(u[j].item()), np_dt(v[j].item()), np_dt(x[j].item()), keep_u, keep_v,
            np_dt(bias[j].item()), with_bias, th, zero, one)
        assert (np_dt(uj), np_dt(vj), np_dt(sj)) == (u_ref[j].item(), v_ref[j].item(), s_ref[j].item()), j
        assert np_dt(mj) == np_dt((v_pre[j] - p.threshold).item()), j


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("recurrent", [False, True])
def test_sparse_forwards_give_the_dense_steps_spikes(dtype, recurrent):
    """The sparse forward (torch, and compiled on CPU) over a sequence: the spikes of
    cuba_float_step's time loop (the dense reference), bit for bit."""
    from neurodeploy.train import sparse, sparse_cpu
    g = torch.Generator().manual_seed(3)
    p = CubaFloatParameters(current_decay=0.21, voltage_decay=0.05, threshold=1.0)
    sur = SurrogateParameters(scale=10.0, band=0.3)
    x = (torch.rand(4, 60, 20, generator=g) < 0.3).to(dtype)
    w = (torch.randn(15, 20, generator=g) * 0.6).to(dtype)
    b = (torch.randn(15, generator=g) * 0.1).to(dtype)
    wr = (torch.randn(15, 15, generator=g) * 0.3).to(dtype) if recurrent else None
    dense = sparse.cuba_layer(x, w, b, p, sur, weight_rec=wr, backward="dense")
    assert 0 < dense.mean() < 1
    spikes, active, sg = sparse.forward_active(x, w, b, wr, p, sur)
    assert torch.equal(spikes, dense)
    if sparse_cpu.numba is not None:
        c_spikes, c_active, c_sg = sparse_cpu.forward_active(x, w, b, p, sur, wr)
        assert torch.equal(c_spikes, dense)
        assert torch.equal(c_active, active) and torch.equal(c_sg, sg)


# --- float step: the Triton kernels' copy against cuba_float_step -------------------------

_TRITON_STEP_CHECK = r"""
import sys
import torch
import triton
import triton.language as tl

from neurodeploy.train.neuron import (CubaFloatParameters, CubaFloatState, SurrogateParameters,
                                      cuba_float_step)
from neurodeploy.train.sparse_triton import cuba_float_update

# _float_operands


@triton.jit
def step(u_ptr, v_ptr, x_ptr, b_ptr, prm_ptr, out_ptr, N, HAS_BIAS: tl.constexpr,
         BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(prm_ptr)
    c = tl.load(prm_ptr + 1)
    th = tl.load(prm_ptr + 2)
    u, v, s, vmt = cuba_float_update(tl.load(u_ptr + offs, mask=mask), tl.load(v_ptr + offs, mask=mask),
                                     tl.load(x_ptr + offs, mask=mask), a, c,
                                     tl.load(b_ptr + offs, mask=mask), th, HAS_BIAS)
    tl.store(out_ptr + offs, u, mask=mask)
    tl.store(out_ptr + N + offs, v, mask=mask)
    tl.store(out_ptr + 2 * N + offs, s, mask=mask)


try:
    p = CubaFloatParameters(current_decay=0.3137, voltage_decay=0.0713, threshold=0.917)
    for dtype in (torch.float64, torch.float32):
        for has_bias in (True, False):
            u, v, x, b = _float_operands(dtype, 1, size=512)
            prm = torch.tensor([1.0 - p.current_decay, 1.0 - p.voltage_decay, p.threshold], dtype=dtype)
            out = torch.empty(3, 512, dtype=dtype)
            step[(1,)](u, v, x, b, prm, out, 512, HAS_BIAS=has_bias, BLOCK=512)
            s, (u_ref, v_ref) = cuba_float_step(x, CubaFloatState(u, v), p, SurrogateParameters(),
                                                b if has_bias else None)
            for name, got, ref in (("u", out[0], u_ref), ("v", out[1], v_ref), ("s", out[2], s)):
                assert torch.equal(got, ref), (str(dtype), has_bias, name)
except AssertionError:
    raise
except Exception as err:   # e.g. Triton's interpreter with an unsupported numpy
    print("INTERPRETER_BROKEN", type(err).__name__, err)
    sys.exit(0)
print("TRITON_STEP_OK")
"""


def test_triton_float_step_is_bit_identical_to_cuba_float_step():
    """The Triton kernels' step (sparse_triton.cuba_float_update, run by Triton's CPU
    interpreter) gives the torch step's u, v and spikes bit for bit."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    script = _TRITON_STEP_CHECK.replace("# _float_operands", inspect.getsource(_float_operands))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    if out.returncode == 0 and "INTERPRETER_BROKEN" in out.stdout:
        pytest.skip("Triton's interpreter cannot run the kernel here: " + out.stdout.strip()[-300:])
    assert out.returncode == 0 and "TRITON_STEP_OK" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]
