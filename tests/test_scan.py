"""The fused dense-BPTT scan (train/scan.py) against autograd through cuba_float_step:
identical spikes, the same gradients for the input currents and the bias, on the
compiled CPU loops and on the torch loops that run on CUDA."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.train import scan
from neurodeploy.train.neuron import (
    CubaFloatParameters,
    SurrogateParameters,
    cuba_float_sequence,
    cuba_float_sequence_reference,
)


def _run(fn, x, p, sg, bias, probe):
    x = x.clone().requires_grad_()
    b = bias.clone().requires_grad_() if bias is not None else None
    s = fn(x, p, sg, b)
    gx, *gb = torch.autograd.grad((s * probe).sum(), [x] + ([b] if b is not None else []))
    return s, gx, (gb[0] if gb else None)


def _compare(x, p, sg, bias, monkeypatch=None, torch_loops=False):
    probe = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
    ref = _run(cuba_float_sequence_reference, x, p, sg, bias, probe)
    if torch_loops:
        monkeypatch.setattr(scan, "_use_compiled", lambda t: None)
    got = _run(cuba_float_sequence, x, p, sg, bias, probe)
    assert torch.equal(got[0], ref[0])          # bit-identical spikes
    assert 0 < float(ref[0].detach().mean()) < 1        # the case fires, and not always
    tol = dict(rtol=1e-4, atol=1e-5) if x.dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got[1], ref[1], **tol)
    assert ref[1].abs().max() > 0
    if bias is not None:
        torch.testing.assert_close(got[2], ref[2], **tol)


@pytest.mark.parametrize("torch_loops", [False, True])
@pytest.mark.parametrize("band", [None, 0.4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_bias", [False, True])
def test_scan_equals_autograd_reference(monkeypatch, torch_loops, band, dtype, with_bias):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 40, 33, generator=g) * 0.6 + 0.2).to(dtype)
    bias = (torch.randn(33, generator=g) * 0.1).to(dtype) if with_bias else None
    _compare(x, CubaFloatParameters(0.25, 0.1, 1.0), SurrogateParameters(3.0, 0.8, band), bias,
             monkeypatch, torch_loops)


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 5), steps=st.integers(1, 30), n=st.integers(1, 17),
       current_decay=st.sampled_from([0.0, 0.1, 0.5, 1.0]), voltage_decay=st.sampled_from([0.0, 0.03, 0.7, 1.0]),
       threshold=st.floats(0.1, 2.0), scale=st.floats(0.5, 20.0), seed=st.integers(0, 2**16))
def test_scan_equals_reference_on_random_layers(batch, steps, n, current_decay, voltage_decay, threshold,
                                                scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, n, generator=g) * threshold
    p = CubaFloatParameters(current_decay, voltage_decay, threshold)
    sg = SurrogateParameters(scale, 1.0, None)
    probe = torch.randn(x.shape, generator=g)
    ref = _run(cuba_float_sequence_reference, x, p, sg, None, probe)
    got = _run(cuba_float_sequence, x, p, sg, None, probe)
    assert torch.equal(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1], rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_scan_on_cuda_equals_reference():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(8, 60, 70, generator=g) * 0.6 + 0.2).cuda()
    bias = (torch.randn(70, generator=g) * 0.1).cuda()
    _compare(x, CubaFloatParameters(0.25, 0.1, 1.0), SurrogateParameters(3.0, 1.0, 0.5), bias)


@pytest.mark.parametrize("route", ["compiled", "csr"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("values", ["spikes", "graded"])
def test_event_products_equal_the_gemm(monkeypatch, route, dtype, values):
    """input_current by events (sparse CPU inputs; compiled loops for weights that fit
    the cache, torch's CSR products for larger ones) against x @ W^T and its autograd
    gradients; a dense input takes the GEMM itself."""
    from neurodeploy.train import events
    if route == "csr":
        monkeypatch.setattr(events, "CACHED_WEIGHT_BYTES", 0)
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 50, 70, generator=g) < 0.05
    x = (mask * (1.0 if values == "spikes" else torch.randn(3, 50, 70, generator=g))).to(dtype)
    w = torch.randn(23, 70, generator=g, dtype=dtype)
    probe = torch.randn(3, 50, 23, generator=g, dtype=dtype)
    assert events._events_apply(x) and not events._events_apply(torch.ones_like(x))
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    got = events.input_current(xs, ws)
    assert got.grad_fn is not None and "EventCurrent" in type(got.grad_fn).__name__
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = xr @ wr.T
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, ref, **tol)
    for a, b in zip(torch.autograd.grad((got * probe).sum(), [xs, ws]),
                    torch.autograd.grad((ref * probe).sum(), [xr, wr])):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("route", ["compiled", "csr"])
def test_event_weight_gradient_equals_the_gemm(monkeypatch, route):
    from neurodeploy.train import events
    if route == "csr":
        monkeypatch.setattr(events, "CACHED_WEIGHT_BYTES", 0)
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(4, 30, 90, generator=g) < 0.04).float()
    du = torch.randn(4, 30, 17, generator=g)
    got = events.weight_gradient(x, du)
    assert events._events_apply(x) and got.shape == (17, 90) and got.abs().max() > 0
    torch.testing.assert_close(got, du.reshape(-1, 17).T @ x.reshape(-1, 90), rtol=1e-5, atol=1e-5)
