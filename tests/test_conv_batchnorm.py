"""Conv SNN layers and batch norm on input currents, folded into weights/bias at export."""
import numpy as np
import pytest
import torch

from neurodeploy.export.quantize import quantize_model
from neurodeploy.network import Conv, Dense, Flatten
from neurodeploy.train.layers import SpikingNetwork
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters, cuba_float_sequence

NEURON = CubaFloatParameters(current_decay=1.0, voltage_decay=0.1, threshold=1.0)


def _trained_bn_model():
    torch.manual_seed(0)
    m = SpikingNetwork((2, 8, 8), [12], 4, NEURON, SurrogateParameters(3.0),
                       conv=[{"channels": 3, "kernel": 3, "stride": 1, "padding": 1},
                             {"channels": 4, "kernel": 3, "stride": 2}], batch_norm=True)
    x = (torch.rand(16, 10, 2, 8, 8) < 0.3).float()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    for _ in range(3):  # move running statistics and BN affine parameters off their defaults
        loss = -m.scores(x).sum()  # push activity up: agreement on silent layers proves nothing
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        for layer in m.layers:
            if layer.norm is not None:
                layer.norm.bias.uniform_(-0.3, 0.3)
                layer.norm.weight.uniform_(0.5, 1.5)
    return m.eval(), x


def test_batch_norm_folds_exactly_into_weights_and_bias():
    m, x = _trained_bn_model()
    with torch.no_grad():
        unfolded = m(x)
        # the same network computed from the folded (weight, bias) of every layer
        s = x
        for i, layer in enumerate(m.layers):
            w, b = layer.folded()
            if i < m.num_conv:
                bt = s.shape[:2]
                cur = torch.nn.functional.conv2d(s.reshape(-1, *layer.input_shape), w,
                                                 stride=layer.stride, padding=layer.padding)
                cur = cur + (0 if b is None else b.reshape(1, -1, 1, 1))
                s = cuba_float_sequence(cur.reshape(*bt, -1), NEURON, layer.surrogate).reshape(*bt, *layer.output_shape)
            else:
                s = s.reshape(s.shape[0], s.shape[1], -1)
                cur = s @ w.T + (0 if b is None else b)
                s = cuba_float_sequence(cur, NEURON, layer.surrogate)
            assert torch.equal(s, unfolded[i]), f"layer {i}"


def test_export_writes_conv_flatten_dense_with_folded_bias():
    m, _ = _trained_bn_model()
    net = quantize_model(m)
    kinds = [type(b) for b in net.layers]
    assert kinds == [Conv, Conv, Flatten, Dense, Dense]
    assert net.layers[0].shape == (3, 8, 8) and net.layers[1].shape == (4, 3, 3)
    assert net.layers[2].shape == (4, 3, 3)
    for b in (net.layers[0], net.layers[1], net.layers[3]):
        assert b.bias is not None and np.abs(b.bias).max() <= 4095 and np.any(b.bias != 0)
    assert net.layers[4].bias is None  # no batch norm on the output layer


def test_batch_norm_needs_non_integrating_current():
    with pytest.raises(ValueError, match="current_decay = 1.0"):
        SpikingNetwork((4,), [3], 2, CubaFloatParameters(0.25, 0.1, 1.0), SurrogateParameters(),
                       batch_norm=True)


def test_tuned_surrogate_heights_give_unit_backward_gain_per_layer():
    from neurodeploy.train.depth import layer_backward_gain, tune_surrogate_heights

    torch.manual_seed(1)
    m = SpikingNetwork((20,), [30, 30, 30, 30], 5, CubaFloatParameters(0.5, 0.1, 1.0), SurrogateParameters(3.0))
    x = (torch.rand(8, 12, 20) < 0.5).float()
    heights = tune_surrogate_heights(m, x)
    assert len(heights) == 5 and len(set(heights)) > 1
    s = x
    for i, layer in enumerate(m.layers):
        assert layer.surrogate.height == pytest.approx(heights[i])
        assert layer_backward_gain(layer, s, seed=i) == pytest.approx(1.0, rel=1e-5)
        with torch.no_grad():
            s = layer(s)


@pytest.mark.lava
@pytest.mark.slow
def test_folded_conv_network_is_spike_exact_on_lava(tmp_path):
    from conftest import LAVA

    if not LAVA:
        pytest.skip("lava-nc / lava-dl not installed")
    from neurodeploy.export.netx import read_netx, write_netx
    from neurodeploy.pipeline import lava_outputs, netx_samples, quantized_outputs

    m, x = _trained_bn_model()
    net = quantize_model(m)
    path = write_netx(net, tmp_path / "conv.net")
    samples = netx_samples(x[:4].numpy(), net)  # (4, x, y, c, T)
    assert samples.shape == (4, 8, 8, 2, 10)
    ours = quantized_outputs(read_netx(path, input_shape=net.input_shape), samples)
    lava = lava_outputs(path, net, samples)
    assert lava.sum() > 0
    assert np.array_equal(ours, lava)
