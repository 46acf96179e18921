"""The dense BPTT time loop against autograd through per-step indexing (the textbook
loop, written out here): the same spikes and, for the autograd loops (the reference
and the recurrent layer), the same gradients bit for bit; the fused scan of a
feed-forward layer sums its adjoint in another order, so its gradients agree to
float rounding."""
import pytest
import torch

from neurodeploy.train.neuron import (
    CubaFloatParameters,
    CubaFloatState,
    SurrogateParameters,
    cuba_float_sequence,
    cuba_float_sequence_reference,
    cuba_float_step,
)
from neurodeploy.train.sparse import cuba_layer


def indexed_loop(current, p, surrogate, bias=None, weight_rec=None):
    b, t, n = current.shape
    state = CubaFloatState(current.new_zeros(b, n), current.new_zeros(b, n))
    s = current.new_zeros(b, n)
    spikes = []
    for k in range(t):
        x = current[:, k]
        if weight_rec is not None:
            x = x + s @ weight_rec.T
        s, state = cuba_float_step(x, state, p, surrogate, bias)
        spikes.append(s)
    return torch.stack(spikes, dim=1)


@pytest.mark.parametrize("band", [None, 3.0])
@pytest.mark.parametrize("recurrent", [False, True])
def test_dense_layer_equals_per_step_indexing_autograd(band, recurrent):
    torch.manual_seed(0)
    p = CubaFloatParameters(0.25, 0.03, 1.0)
    sg = SurrogateParameters(3.0, 1.0, band)
    x = (torch.rand(6, 40, 30) < 0.2).float()
    w = (torch.randn(20, 30) * 0.6).requires_grad_()
    bias = (torch.randn(20) * 0.1).requires_grad_()
    w_rec = (torch.randn(20, 20) * 0.3).requires_grad_() if recurrent else None
    weights = [w, bias] + ([w_rec] if recurrent else [])
    probe = torch.randn(6, 40, 20)

    def grads(out):
        assert 0 < float(out.mean()) < 1  # some neurons fire, some do not
        return torch.autograd.grad((out * probe).sum(), weights, retain_graph=True)

    def same(a, b, exact):
        if exact:
            assert torch.equal(a, b)
        else:
            assert a.abs().max() > 0
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    ref = indexed_loop(x @ w.T, p, sg, bias, w_rec)
    ours = cuba_layer(x, w, bias, p, sg, weight_rec=w_rec, backward="dense")
    assert torch.equal(ours, ref)
    for a, b in zip(grads(ours), grads(ref)):
        same(a, b, exact=recurrent)
    if not recurrent:
        for fn, exact in ((cuba_float_sequence_reference, True), (cuba_float_sequence, False)):
            seq = fn(x @ w.T, p, sg, bias)
            assert torch.equal(seq, ref)
            for a, b in zip(grads(seq), grads(ref)):
                same(a, b, exact)
