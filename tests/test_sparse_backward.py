"""Sparse backward == dense autograd reference (same truncated surrogate), float64."""
import pytest
import torch

from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
from neurodeploy.train.sparse import cuba_layer

P = CubaFloatParameters(current_decay=0.3, voltage_decay=0.1, threshold=1.0)


def _rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def _grads(backward, x, ws, bias, rec, band, p=P, seed=0):
    """Gradients of a random linear loss of the last layer's spikes w.r.t. all weights."""
    sur = SurrogateParameters(scale=5.0, band=band)
    params = [w.clone().requires_grad_(True) for w in ws]
    b = None if bias is None else bias.clone().requires_grad_(True)
    r = None if rec is None else rec.clone().requires_grad_(True)
    xi = x.clone().requires_grad_(True)
    s = xi
    for i, w in enumerate(params):
        last = i == len(params) - 1
        s = cuba_layer(s, w, b if last else None, p, sur, weight_rec=r if last else None, backward=backward)
    g = torch.randn(s.shape, generator=torch.Generator().manual_seed(seed), dtype=s.dtype)
    (s * g).sum().backward()
    out = [w.grad for w in params]
    if b is not None:
        out.append(b.grad)
    if r is not None:
        out.append(r.grad)
    return s.detach(), out, xi.grad


def _network(seed, sizes, batch=6, steps=25, rate=0.3):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, steps, sizes[0], generator=gen) < rate).double()
    ws = [torch.randn(o, i, generator=gen, dtype=torch.float64) * (1.5 / i ** 0.5)
          for i, o in zip(sizes[:-1], sizes[1:])]
    return x, ws


@pytest.mark.parametrize("seed", range(4))
def test_multilayer_weight_gradients_match_dense(seed):
    x, ws = _network(seed, [30, 40, 25, 8])
    bias = torch.randn(8, dtype=torch.float64) * 0.1
    sd, gd, _ = _grads("dense", x, ws, bias, None, band=0.4)
    ss, gs, _ = _grads("sparse", x, ws, bias, None, band=0.4)
    assert torch.equal(sd, ss)
    assert sd.sum() > 0
    for a, b in zip(gs, gd):
        assert b.abs().max() > 0
        assert _rel_err(a, b) <= 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_recurrent_layer_gradients_match_dense(seed):
    x, ws = _network(seed + 10, [20, 15])
    rec = torch.randn(15, 15, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 0.3
    sd, gd, xd = _grads("dense", x, ws, None, rec, band=0.5)
    ss, gs, xs = _grads("sparse", x, ws, None, rec, band=0.5)
    assert torch.equal(sd, ss)
    for a, b in zip(gs, gd):
        assert _rel_err(a, b) <= 1e-10
    assert _rel_err(xs, xd) <= 1e-10  # full input gradient when the input is not a sparse layer


def test_input_gradient_matches_dense_for_single_layer():
    x, ws = _network(3, [12, 9])
    _, _, xd = _grads("dense", x, ws, None, None, band=0.3)
    _, _, xs = _grads("sparse", x, ws, None, None, band=0.3)
    assert xd.abs().max() > 0 and _rel_err(xs, xd) <= 1e-10


def test_empty_active_set_gives_zero_gradients():
    x, ws = _network(1, [10, 6])
    ws = [w * 0 - 5.0 for w in ws]  # v far below threshold: nothing in the band
    _, gs, _ = _grads("sparse", x, ws, None, None, band=0.1)
    _, gd, _ = _grads("dense", x, ws, None, None, band=0.1)
    assert torch.count_nonzero(gs[0]) == 0 and torch.count_nonzero(gd[0]) == 0


def test_all_active_extreme_matches_dense():
    x, ws = _network(2, [10, 6], rate=0.6)
    _, gd, _ = _grads("dense", x, ws, None, None, band=1e6)
    _, gs, _ = _grads("sparse", x, ws, None, None, band=1e6)
    assert _rel_err(gs[0], gd[0]) <= 1e-10


def test_extreme_decays_match_dense():
    x, ws = _network(5, [10, 7, 4])
    for p in (CubaFloatParameters(1.0, 1.0, 1.0), CubaFloatParameters(0.0, 0.0, 0.5)):
        _, gd, _ = _grads("dense", x, ws, None, None, band=0.5, p=p)
        _, gs, _ = _grads("sparse", x, ws, None, None, band=0.5, p=p)
        for a, b in zip(gs, gd):
            assert _rel_err(a, b) <= 1e-9


def test_bad_input_is_a_clear_error():
    x, ws = _network(0, [5, 3])
    sur = SurrogateParameters(band=0.5)
    with pytest.raises(ValueError, match="surrogate.band"):
        cuba_layer(x, ws[0], None, P, SurrogateParameters(band=None), backward="sparse")
    with pytest.raises(ValueError, match="band must be > 0"):
        SurrogateParameters(band=0.0)
    with pytest.raises(ValueError, match="does not match input features"):
        cuba_layer(x, ws[0].T, None, P, sur, backward="sparse")
    with pytest.raises(TypeError, match="float32"):
        cuba_layer(x, ws[0].float(), None, P, sur, backward="sparse")
    with pytest.raises(TypeError, match="CUBA-LIF"):
        cuba_layer(x, ws[0], None, object(), sur, backward="sparse")
    with pytest.raises(ValueError, match="backward must be"):
        cuba_layer(x, ws[0], None, P, sur, backward="fast")
