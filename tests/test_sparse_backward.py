"""The sparse backward (neurodeploy.train.sparse) against the dense autograd reference."""
from __future__ import annotations

import pytest
import torch

from neurodeploy.train import sparse, sparse_cpu
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
from neurodeploy.train.sparse import (
    SparseCubaFunction,
    check_backward_mode,
    cuba_layer,
    forward_active,
    last_spike_before,
)

F64 = torch.float64
SURROGATE = SurrogateParameters(scale=10.0, height=1.0, band=0.3)


@pytest.fixture(params=["compiled", "torch"])
def cpu_path(request, monkeypatch):
    """Both CPU implementations: the compiled pass (train.sparse_cpu) and torch's."""
    if request.param == "compiled":
        if sparse_cpu.numba is None:
            pytest.skip("numba is not installed")
        calls = []
        original = sparse_cpu.fused_layer_backward

        def counted(*args, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(sparse_cpu, "fused_layer_backward", counted)
        yield request.param
        assert calls, "the compiled CPU backward was not used"
    else:
        monkeypatch.setattr(sparse, "USE_COMPILED_CPU", False)
        yield request.param


def _net(n_in, sizes, recurrent, seed, scale=0.7, bias=True):
    g = torch.Generator().manual_seed(seed)
    layers, prev = [], n_in
    for k, n in enumerate(sizes):
        w = torch.randn(n, prev, generator=g, dtype=F64) * scale
        b = torch.randn(n, generator=g, dtype=F64) * 0.1 if bias else None
        r = torch.randn(n, n, generator=g, dtype=F64) * 0.4 if recurrent and k == 0 else None
        layers.append((w, b, r))
        prev = n
    return layers


def _loss_weights(outs):
    """The linear loss's weight on each layer's spikes (the same in every run)."""
    g = torch.Generator().manual_seed(123)
    return [torch.randn(o.shape, generator=g, dtype=o.dtype).to(o.device) for o in outs]


def _run(x, layers, p, surrogate, mode, x_grad=True, retain_hidden=False):
    """Forward the network, a random linear loss on every layer's spikes, backward.
    Returns (spikes of every layer, [grad x] + grads of every parameter); with
    retain_hidden, each layer's spikes keep their gradient (``.grad``)."""
    x = x.clone().requires_grad_(x_grad)
    params = [[t.clone().requires_grad_(True) if t is not None else None for t in layer]
              for layer in layers]
    h, outs = x, []
    for w, b, r in params:
        h = cuba_layer(h, w, b, p, surrogate, weight_rec=r, backward=mode)
        if retain_hidden:
            h.retain_grad()
        outs.append(h)
    loss = sum((o * c).sum() for o, c in zip(outs, _loss_weights(outs)))
    loss = loss + outs[-1].sum(1).pow(2).sum() * 0.1   # a nonlinear term
    loss.backward()
    grads = [x.grad] if x_grad else []
    grads += [t.grad for layer in params for t in layer if t is not None]
    return outs, grads


def _assert_grads_close(dense, sparse, rtol=1e-4):
    assert len(dense) == len(sparse)
    for gd, gs in zip(dense, sparse):
        assert gd is not None and gs is not None
        scale = gd.abs().max().clamp(min=1e-12)
        assert ((gd - gs).abs().max() / scale).item() <= rtol, (gd, gs)


def _input(shape, rate, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=F64) < rate).to(F64)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("recurrent", [False, True])
def test_sparse_gradients_equal_dense_reference_multilayer(seed, recurrent, cpu_path):
    p = CubaFloatParameters(current_decay=0.2 + 0.1 * seed, voltage_decay=0.05 * seed, threshold=1.0)
    x = _input((3, 25, 9), 0.3, seed)
    layers = _net(9, (8, 6, 4), recurrent, seed)
    sd, gd = _run(x, layers, p, SURROGATE, "dense")
    ss, gs = _run(x, layers, p, SURROGATE, "sparse")
    for a, b in zip(sd, ss):
        assert torch.equal(a, b)
    assert 0 < sd[0].mean() < 1   # the test exercises spikes and resets
    _assert_grads_close(gd, gs)


@pytest.mark.parametrize("recurrent", ["none", "lower", "upper"])
def test_input_gradient_is_computed_at_the_active_entries_of_the_layer_below(monkeypatch, recurrent):
    """A wide sparse layer (more than NARROW_LAYER neurons) on top of another sparse layer
    computes dL/d(its input spikes) in the compiled pass at the lower layer's active
    entries only (its backward reads nothing else): every parameter gradient still
    equals dense BPTT, and the spikes' gradient equals dense there and is 0 elsewhere."""
    if sparse_cpu.numba is None:
        pytest.skip("numba is not installed")
    lowers = []
    original = sparse_cpu.fused_layer_backward

    def recorded(*args, **kwargs):
        lowers.append(kwargs.get("lower_active"))
        return original(*args, **kwargs)

    monkeypatch.setattr(sparse_cpu, "fused_layer_backward", recorded)
    p = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1)
    x = _input((5, 30, 12), 0.3, 8)
    layers = _net(12, (40, sparse_cpu.NARROW_LAYER + 8, 5), recurrent == "lower", 8, scale=0.6)
    if recurrent == "upper":   # the wide layer fed by the sparse layer is recurrent
        w, b, _ = layers[1]
        r = torch.randn(w.shape[0], w.shape[0], generator=torch.Generator().manual_seed(9),
                        dtype=F64) * 0.3
        layers[1] = (w, b, r)
    grads, hidden = {}, {}
    for mode in ("dense", "sparse"):
        outs, grads[mode] = _run(x, layers, p, SURROGATE, mode, retain_hidden=True)
        hidden[mode] = [o.grad for o in outs]
    direct = _loss_weights(outs)
    _assert_grads_close(grads["dense"], grads["sparse"], rtol=1e-9)
    # backward order: layer 2 (narrow: offered layer 1's entries, keeps its dense in-pass
    # product), layer 1 (wide: at layer 0's entries), layer 0 (its input is the data)
    assert lowers[0] is not None and lowers[1] is not None and lowers[2] is None
    below = lowers[1]
    assert 0 < below.numel() < x.shape[0] * x.shape[1] * 40 // 2
    # the gradient of layer 0's spikes: layer 1's part only at layer 0's active entries
    # (the loss's own term is dense): equal to dense BPTT there
    b, t, n = hidden["dense"][0].shape
    ti, bi, ji = sparse.split_tbn(below, b, n)
    at = torch.zeros(b, t, n, dtype=torch.bool)
    at[bi, ti, ji] = True
    gd, gs = hidden["dense"][0], hidden["sparse"][0]
    assert torch.allclose(gs[at], gd[at], rtol=1e-9, atol=1e-12)
    # elsewhere only the loss's direct term: layer 1's part was not computed there
    assert torch.equal(gs[~at], direct[0][~at])
    assert not torch.allclose(gd[~at], direct[0][~at])


def test_sparse_gradients_with_real_valued_input_and_extreme_decays(cpu_path):
    # current_decay 1 (u = x), voltage_decay 0 (no leak) and the reverse
    x = torch.randn(2, 20, 5, dtype=F64, generator=torch.Generator().manual_seed(3))
    for cd, vd in [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)]:
        p = CubaFloatParameters(current_decay=cd, voltage_decay=vd, threshold=0.8)
        layers = _net(5, (6, 3), True, 7, scale=0.5)
        _, gd = _run(x, layers, p, SURROGATE, "dense")
        _, gs = _run(x, layers, p, SURROGATE, "sparse")
        _assert_grads_close(gd, gs)


def test_empty_active_set_gives_zero_gradients(cpu_path):
    p = CubaFloatParameters()
    x = _input((2, 15, 6), 0.3, 0)
    layers = [(torch.zeros(4, 6, dtype=F64), None, None)]   # v stays 0, far from threshold 1
    _, active, _ = forward_active(x, layers[0][0], None, None, p, SURROGATE)
    assert active.numel() == 0
    _, gd = _run(x, layers, p, SURROGATE, "dense")
    _, gs = _run(x, layers, p, SURROGATE, "sparse")
    for g in gs:
        assert torch.count_nonzero(g) == 0
    _assert_grads_close(gd, gs)


def test_all_active_extreme_matches_dense(cpu_path):
    p = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1)
    wide = SurrogateParameters(scale=1.0, height=1.0, band=1e6)
    x = _input((2, 20, 7), 0.4, 1)
    layers = _net(7, (5, 3), True, 2)
    _, active, _ = forward_active(x, layers[0][0], layers[0][1], layers[0][2], p, wide)
    assert active.numel() == 2 * 20 * 5
    _, gd = _run(x, layers, p, wide, "dense")
    _, gs = _run(x, layers, p, wide, "sparse")
    _assert_grads_close(gd, gs)


def test_first_layer_without_input_gradient_matches_dense(cpu_path):
    p = CubaFloatParameters(current_decay=0.25, voltage_decay=0.1)
    x = _input((4, 30, 10), 0.2, 5)
    layers = _net(10, (7, 3), False, 5, bias=False)
    _, gd = _run(x, layers, p, SURROGATE, "dense", x_grad=False)
    _, gs = _run(x, layers, p, SURROGATE, "sparse", x_grad=False)
    _assert_grads_close(gd, gs)


def test_sparse_gradient_passes_gradcheck_against_surrogate_definition(cpu_path):
    # torch's gradcheck of a spiking layer is meaningless (Heaviside); instead check the
    # sparse Function's backward against autograd of the dense reference at many points
    p = CubaFloatParameters(current_decay=0.4, voltage_decay=0.2)
    for seed in range(10):
        g = torch.Generator().manual_seed(100 + seed)
        b, t, n_in, n = 1 + seed % 3, 5 + 3 * seed, 1 + seed % 4, 1 + seed % 5
        x = _input((b, t, n_in), 0.5, seed)
        w = torch.randn(n, n_in, generator=g, dtype=F64)
        r = torch.randn(n, n, generator=g, dtype=F64) if seed % 2 else None
        _, gd = _run(x, [(w, None, r)], p, SURROGATE, "dense")
        _, gs = _run(x, [(w, None, r)], p, SURROGATE, "sparse")
        _assert_grads_close(gd, gs)


def test_float32_spikes_identical_and_gradients_close(cpu_path):
    p = CubaFloatParameters(current_decay=0.2, voltage_decay=0.1)
    x = _input((8, 50, 40), 0.1, 9).float()
    layers = [tuple(t.float() if t is not None else None for t in layer)
              for layer in _net(40, (30, 10), True, 9, scale=0.4)]
    sd, gd = _run(x, layers, p, SURROGATE, "dense", x_grad=False)
    ss, gs = _run(x, layers, p, SURROGATE, "sparse", x_grad=False)
    for a, b in zip(sd, ss):
        assert torch.equal(a, b)
    _assert_grads_close(gd, gs, rtol=1e-4)


@pytest.mark.parametrize("recurrent", [False, True])
def test_compiled_and_torch_cpu_paths_agree_on_a_wider_layer(monkeypatch, recurrent):
    """Benchmark-like shapes (several samples per core, four-row passes and their
    remainders) in float32, the compiled pass against the torch implementation."""
    if sparse_cpu.numba is None:
        pytest.skip("numba is not installed")
    p = CubaFloatParameters(current_decay=0.5, voltage_decay=0.1)
    sur = SurrogateParameters(scale=100.0, height=1.0, band=0.1)
    x = _input((9, 60, 70), 0.1, 11).float()
    layers = [tuple(t.float() if t is not None else None for t in layer)
              for layer in _net(70, (50, 5), recurrent, 11, scale=0.35)]
    sc, gc = _run(x, layers, p, sur, "sparse", x_grad=False)
    monkeypatch.setattr(sparse, "USE_COMPILED_CPU", False)
    st, gt = _run(x, layers, p, sur, "sparse", x_grad=False)
    for a, b in zip(sc, st):
        assert torch.equal(a, b)
    assert 0.005 < sc[0].mean() < 0.5
    _assert_grads_close(gt, gc, rtol=1e-5)


def test_without_numba_the_torch_path_runs(monkeypatch):
    monkeypatch.setattr(sparse_cpu, "numba", None)
    assert sparse_cpu.fused_layer_backward(*([None] * 10)) is None
    p = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1)
    x = _input((2, 20, 6), 0.4, 4)
    layers = _net(6, (5,), True, 4)
    _, gd = _run(x, layers, p, SURROGATE, "dense")
    _, gs = _run(x, layers, p, SURROGATE, "sparse")
    _assert_grads_close(gd, gs)


def test_last_spike_before_finds_the_previous_spike_of_the_same_neuron():
    s = torch.zeros(2, 6, 3)
    s[0, 1, 0] = s[0, 4, 0] = s[1, 2, 2] = s[0, 2, 1] = 1
    bi = torch.tensor([0, 0, 0, 0, 1, 1, 0])
    ti = torch.tensor([1, 2, 5, 4, 3, 2, 5])
    ji = torch.tensor([0, 0, 0, 0, 2, 2, 2])
    r = last_spike_before(s, bi, ti, ji)
    assert r.tolist() == [-1, 1, 4, 1, 2, -1, -1]


def test_sparse_saves_less_for_backward_than_dense():
    p = CubaFloatParameters(current_decay=0.2, voltage_decay=0.1)
    x = _input((8, 100, 50), 0.05, 0).float()
    w = (torch.randn(40, 50, generator=torch.Generator().manual_seed(0)) * 0.3).requires_grad_(True)
    sizes = {}
    for mode in ("dense", "sparse"):
        seen = {}

        def pack(t):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            s = cuba_layer(x, w, None, p, SURROGATE, backward=mode)
        s.sum().backward()
        skip = {x.untyped_storage().data_ptr(), w.untyped_storage().data_ptr()}
        sizes[mode] = sum(v for k, v in seen.items() if k not in skip)
    assert sizes["sparse"] < sizes["dense"]


# --- bad input -----------------------------------------------------------------------------

def test_sparse_needs_a_band():
    x = torch.zeros(1, 3, 2)
    with pytest.raises(ValueError, match="band"):
        cuba_layer(x, torch.zeros(2, 2), None, CubaFloatParameters(),
                   SurrogateParameters(band=None), backward="sparse")


def test_band_must_be_positive():
    with pytest.raises(ValueError, match="band must be > 0"):
        SurrogateParameters(band=0.0)
    with pytest.raises(ValueError, match="band must be > 0"):
        SurrogateParameters(band=-0.1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight=torch.zeros(2, 3)), "weight must be"),
    (dict(x_in=torch.zeros(3, 2)), r"x_in must be \(batch, time, in\)"),
    (dict(bias=torch.zeros(3)), "bias must be"),
    (dict(weight_rec=torch.zeros(2, 3)), "weight_rec must be"),
    (dict(weight=torch.zeros(2, 2, dtype=F64)), "dtype"),
    (dict(bias=torch.zeros(2, dtype=F64)), "dtype"),
    (dict(x_in=torch.zeros(1, 3, 2, dtype=torch.int64)), "floating point"),
    (dict(backward="fast"), "backward must be one of"),
])
def test_bad_input_is_a_clear_error(kwargs, match):
    args = dict(x_in=torch.zeros(1, 3, 2), weight=torch.zeros(2, 2), bias=None, weight_rec=None,
                backward="sparse")
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        cuba_layer(args["x_in"], args["weight"], args["bias"], CubaFloatParameters(), SURROGATE,
                   weight_rec=args["weight_rec"], backward=args["backward"])


def test_non_lif_layer_cannot_use_sparse_backward():
    check_backward_mode("sparse", "cuba", "layer 0")
    check_backward_mode("dense", "conv", "layer 1")
    with pytest.raises(ValueError, match="layer 2.*sigma_delta"):
        check_backward_mode("sparse", "sigma_delta", "layer 2")


@pytest.mark.parametrize("recurrent", [True, False])
def test_compiled_backward_takes_active_entries_in_any_order(recurrent):
    """The pass decodes the flat indices row by row of the sorted list and the recurrent
    pass walks each sample's entries in (t, j) order: shuffled (index, surrogate) pairs
    give the same gradients as the forward's sorted ones."""
    if sparse_cpu.numba is None:
        pytest.skip("numba is not installed")
    p = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1)
    x = _input((3, 30, 8), 0.3, 5)
    (w, _, r), = _net(8, (12,), recurrent, 5)
    spikes, active, sg = forward_active(x, w, None, r, p, SURROGATE)
    assert active.numel() > 10
    grad = torch.randn(spikes.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    args = (x, spikes, grad)
    ref = sparse_cpu.fused_layer_backward(*args, active, sg, 0.7, 0.9, r, True, True)
    perm = torch.randperm(active.numel(), generator=torch.Generator().manual_seed(2))
    got = sparse_cpu.fused_layer_backward(*args, active[perm], sg[perm], 0.7, 0.9, r, True, True)
    for a, b in zip(ref, got):
        assert (a is None and b is None) if a is None or b is None else torch.equal(a, b)


def test_sparse_function_is_what_cpu_dispatch_uses():
    x = _input((1, 5, 2), 0.5, 0)
    w = torch.ones(2, 2, dtype=F64, requires_grad=True)
    s = cuba_layer(x, w, None, CubaFloatParameters(), SURROGATE, backward="sparse")
    assert s.grad_fn.__class__.__name__ == SparseCubaFunction.__name__ + "Backward"


# --- the Triton (CUDA) implementation ------------------------------------------------------

_TRITON_CHECK = r"""
import sys
import torch
import triton
import triton.language as tl


@triton.jit
def probe(x_ptr, T, B: tl.constexpr):   # a loop over a runtime bound, nothing of ours
    o = tl.arange(0, B)
    acc = tl.zeros([B], dtype=tl.float32)
    for t in range(T):
        acc += tl.load(x_ptr + t * B + o)
    tl.store(x_ptr + o, acc)


try:
    probe[(1,)](torch.ones(3, 8), 3, B=8)
except Exception as err:   # e.g. Triton 3.6's interpreter with numpy 2.5
    print("INTERPRETER_BROKEN", type(err).__name__, err)
    sys.exit(0)
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
from neurodeploy.train.sparse import SparseCubaFunction, TorchKernels
from neurodeploy.train import sparse_cuda
from neurodeploy.train.sparse_cuda import TritonKernels

p = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1)
sur = SurrogateParameters(scale=10.0, height=1.0, band=0.3)
g = torch.Generator().manual_seed(0)
# (batch, time, in, out); the chunked run also shrinks the kernels' blocks, so 70 neurons
# span several feed-forward programs (32 neurons each) and several of the recurrent
# kernel's neuron blocks (32) and reduction blocks (16), and a batch of 5 is not a
# multiple of its samples per program (2)
shapes = [(3, 20, 9, 6), (5, 12, 9, 70)]
for dtype, recurrent, (nb, nt, ni, no) in [(d, r, s) for d in (torch.float64, torch.float32)
                                           for r in (False, True) for s in shapes]:
        x = (torch.rand(nb, nt, ni, generator=g) < 0.3).to(dtype)
        w = torch.randn(no, ni, generator=g).to(dtype) * 0.7
        b = torch.randn(no, generator=g).to(dtype) * 0.1
        r = torch.randn(no, no, generator=g).to(dtype) * 0.4 / no ** 0.5 * 2.5 if recurrent else None
        weights = torch.randn(nb, nt, no, generator=g).to(dtype)
        res = {}
        # the Triton backward in one batch chunk, and in chunks of one sample each
        for name, kernels, chunk, rec_blocks, block in (
                ("torch", TorchKernels, None, None, None),
                ("triton", TritonKernels, 16 << 20, (1, 256, 16), 128),
                ("triton chunked", TritonKernels, 1, (2, 32, 16), 32)):
            sparse_cuda.CHUNK_BYTES = sparse_cuda.REC_CHUNK_BYTES = chunk
            sparse_cuda.BLOCK = block   # 32: 70 neurons in three feed-forward programs
            if rec_blocks is not None:
                sparse_cuda.REC_SAMPLES, sparse_cuda.REC_BLOCK_J, sparse_cuda.REC_BLOCK_K = rec_blocks
            ts = [t.clone().requires_grad_(True) if t is not None else None for t in (x, w, b, r)]
            s = SparseCubaFunction.apply(ts[0], ts[1], ts[2], ts[3], p, sur, kernels)
            (s * weights).sum().backward()
            res[name] = [s] + [t.grad for t in ts if t is not None]
        assert 0 < res["torch"][0].mean() < 1
        for name in ("triton", "triton chunked"):
            assert torch.equal(res["torch"][0], res[name][0]), "spikes differ"
            for a, c in zip(res["torch"][1:], res[name][1:]):
                err = ((a - c).abs().max() / a.abs().max().clamp(min=1e-12)).item()
                assert err <= (1e-10 if dtype == torch.float64 else 1e-5), (name, err)
# two layers through the function cuba_layer uses: the upper Triton layer keeps the
# lower one's uint8 copy of its spikes in place of the float input
from neurodeploy.train import sparse as sparse_mod
sparse_cuda.CHUNK_BYTES, sparse_cuda.BLOCK = 16 << 20, 128
for dtype in (torch.float64, torch.float32):
    x = (torch.rand(4, 16, 9, generator=g) < 0.3).to(dtype)
    w1 = torch.randn(30, 9, generator=g).to(dtype) * 0.7
    w2 = torch.randn(6, 30, generator=g).to(dtype) * 0.5
    weights = torch.randn(4, 16, 6, generator=g).to(dtype)
    res = {}
    for name, kernels in (("torch", TorchKernels), ("triton", TritonKernels)):
        ts = [t.clone().requires_grad_(True) for t in (x, w1, w2)]
        h = sparse_mod._sparse_layer(ts[0], ts[1], None, None, p, sur, kernels)
        o = sparse_mod._sparse_layer(h, ts[2], None, None, p, sur, kernels)
        if kernels is TritonKernels:
            assert h._sparse_spikes_uint8.spikes.dtype == torch.uint8
            assert o.grad_fn.saved_tensors[0].dtype == torch.uint8, "float input kept"
        (o * weights).sum().backward()
        res[name] = [h, o] + [t.grad for t in ts]
    assert 0 < res["torch"][0].mean() < 1
    for a, c in zip(res["torch"][:2], res["triton"][:2]):
        assert torch.equal(a, c), "spikes differ"
    for a, c in zip(res["torch"][2:], res["triton"][2:]):
        err = ((a - c).abs().max() / a.abs().max().clamp(min=1e-12)).item()
        assert err <= (1e-10 if dtype == torch.float64 else 1e-5), ("two layers", err)
print("TRITON_OK")
"""


def test_triton_kernels_match_torch_in_interpreter_mode():
    """The CUDA path's Triton kernels, run by Triton's CPU interpreter (no GPU needed)."""
    pytest.importorskip("triton")
    import os
    import subprocess
    import sys
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", _TRITON_CHECK], env=env, capture_output=True,
                         text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
    if out.returncode == 0 and "INTERPRETER_BROKEN" in out.stdout:
        pytest.skip("Triton's interpreter cannot run a plain loop kernel on this install: "
                    + out.stdout.strip()[-300:])
    assert out.returncode == 0 and "TRITON_OK" in out.stdout, out.stderr[-3000:]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("recurrent", [False, True])
def test_cuda_sparse_gradients_equal_dense_reference(recurrent):
    pytest.importorskip("triton")
    p = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1)
    x = _input((4, 40, 12), 0.3, 0).cuda()
    layers = [tuple(t.cuda() if t is not None else None for t in layer)
              for layer in _net(12, (10, 5), recurrent, 0)]
    sd, gd = _run(x, layers, p, SURROGATE, "dense")
    ss, gs = _run(x, layers, p, SURROGATE, "sparse")
    assert ss[0].grad_fn is not None
    for a, b in zip(sd, ss):
        assert torch.equal(a, b)
    _assert_grads_close(gd, gs)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("graded", [False, True])
def test_cuda_float32_gradients_equal_dense(graded):
    """float32 on the GPU (the spikes kept as uint8, one batch chunk), 0/1 and graded
    inputs: the same spikes as float32 dense BPTT and its gradients to 1e-5."""
    pytest.importorskip("triton")
    p = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1)
    x = _input((32, 50, 300), 0.1, 4)
    if graded:
        x = x * torch.rand(x.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    x = x.float().cuda()
    layers = [tuple(t.float().cuda() if t is not None else None for t in layer)
              for layer in _net(300, (96, 10), False, 4, scale=0.25 if not graded else 0.5)]
    sd, gd = _run(x, layers, p, SURROGATE, "dense")
    ss, gs = _run(x, layers, p, SURROGATE, "sparse")
    assert 0 < ss[0].mean() < 0.5
    for a, b in zip(sd, ss):
        assert torch.equal(a, b)
    _assert_grads_close(gd, gs, rtol=1e-5)


@pytest.mark.cuda
@cuda
def test_cuda_upper_layer_keeps_uint8_input_spikes_and_less_memory(monkeypatch):
    """A layer above another sparse layer keeps that layer's uint8 spikes, not the
    float ones: same gradients, lower peak memory over forward and backward."""
    pytest.importorskip("triton")
    from neurodeploy.train import sparse as sparse_mod
    p = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1)
    x = _input((64, 100, 300), 0.05, 6).float().cuda()
    layers = [tuple(t.float().cuda() if t is not None else None for t in layer)
              for layer in _net(300, (256, 256, 10), False, 6, scale=0.3)]
    result = {}
    for on in (True, False):
        monkeypatch.setattr(sparse_mod, "SAVE_INPUT_SPIKES_AS_UINT8", on)
        params = [t.detach().clone().requires_grad_(True) for layer in layers for t in layer
                  if t is not None]
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        s = x
        for k in range(3):
            w, b = params[2 * k], params[2 * k + 1]
            s = cuba_layer(s, w, b, p, SURROGATE, backward="sparse")
        s.sum(1).logsumexp(1).sum().backward()
        torch.cuda.synchronize()
        result[on] = (torch.cuda.max_memory_allocated() - base, [q.grad for q in params])
    (peak_u8, g_u8), (peak_f, g_f) = result[True], result[False]
    for a, c in zip(g_f, g_u8):
        assert torch.allclose(a, c, rtol=1e-6, atol=1e-7)
    # a hidden layer's float spikes are 64 x 100 x 256 x 4 B = 6.5 MB
    assert peak_u8 < peak_f - 5e6, (peak_u8, peak_f)


@pytest.mark.cuda
@cuda
def test_cuda_float32_spikes_identical_to_dense():
    pytest.importorskip("triton")
    p = CubaFloatParameters(current_decay=0.2, voltage_decay=0.1)
    x = _input((16, 100, 64), 0.1, 2).float().cuda()
    w = (torch.randn(48, 64, generator=torch.Generator().manual_seed(0)) * 0.4).cuda()
    sd = cuba_layer(x, w, None, p, SURROGATE, backward="dense")
    ss = cuba_layer(x, w, None, p, SURROGATE, backward="sparse")
    assert torch.equal(sd, ss)



@pytest.mark.parametrize("decays", [(0.75, 0.9), (0.0, 1.0), (1.0, 0.0)])
def test_input_trace_is_the_double_leaky_filter(decays):
    from neurodeploy.train.sparse import filtered_trace
    a, c = decays
    x = torch.randn(2, 12, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    ref = torch.zeros_like(x)
    for t in range(12):   # closed form: Y[t] = sum_{k<=t} c^(t-k) sum_{m<=k} a^(k-m) x[m]
        for k in range(t + 1):
            for m in range(k + 1):
                ref[:, t] += c ** (t - k) * a ** (k - m) * x[:, m]
    assert torch.allclose(filtered_trace(x, a, c), ref, rtol=1e-12, atol=1e-12)
