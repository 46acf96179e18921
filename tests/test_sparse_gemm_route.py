"""The sparse backward on CPU with many active entries takes the weight gradient as one
GEMM (du^T x_in): the same gradients as the entry-by-entry A @ Y and as dense autograd
through the band-truncated surrogate."""
import pytest
import torch

from neurodeploy.train import sparse
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
from neurodeploy.train.sparse import cuba_layer

pytest.importorskip("numba")


@pytest.mark.parametrize("band", [3.0, 0.3])
def test_gemm_weight_gradient_equals_sparse_and_dense(monkeypatch, band):
    torch.manual_seed(0)
    p = CubaFloatParameters(0.25, 0.1, 1.0)
    sg = SurrogateParameters(3.0, 1.0, band)
    x = (torch.rand(5, 60, 48) < 0.2).float()
    w1 = (torch.randn(40, 48) * 0.5).requires_grad_()
    w2 = (torch.randn(36, 40) * 0.6).requires_grad_()
    probe = torch.randn(5, 60, 36)

    def grads(mode, threshold):
        monkeypatch.setattr(sparse, "GEMM_WEIGHT_GRADIENT_ABOVE", threshold)
        stats = {}
        h = cuba_layer(x, w1, None, p, sg, backward=mode, stats=stats)
        out = cuba_layer(h, w2, None, p, sg, backward=mode, stats=stats)
        g = torch.autograd.grad((out * probe).sum(), [w1, w2])
        return g, (stats["active"] / stats["entries"] if stats else None), float(h.mean())

    gemm, active, rate = grads("sparse", 0.0)
    entries, _, _ = grads("sparse", 2.0)
    dense, _, _ = grads("dense", 0.0)
    assert 0.02 < rate < 0.5 and active > 0.01
    for a, b, c in zip(gemm, entries, dense):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
