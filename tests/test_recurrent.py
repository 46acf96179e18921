"""Recurrent CUBA dense layers (netx dense_rec): the training forwards against the
quantised network in the bit-accurate simulator and on Lava, both backwards, the
config key and a recurrent pipeline run spike-exact on Lava."""
import json

import h5py
import numpy as np
import pytest
import torch
from conftest import requires_lava

from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.export.quantize import quantize_model
from neurodeploy.pipeline import netx_samples
from neurodeploy.sim.samples import simulated_outputs
from neurodeploy.train.hardware import set_hardware_aware
from neurodeploy.train.layers import CubaDense, SpikingNetwork
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters

SURROGATE = SurrogateParameters(scale=3.0, height=1.0, band=3.0)


def _network(seed, hidden=(24, 16), neuron=CubaFloatParameters(0.25, 0.03, 1.0), backward="dense"):
    torch.manual_seed(seed)
    return SpikingNetwork((40,), list(hidden), 10, neuron, SURROGATE, backward=backward, recurrent=True)


def _inputs(seed, n=12, steps=16, features=40, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, steps, features, generator=g) < rate).float()


def _forward_outputs(model, x):
    """Output spikes of the model's own forward in the simulator's layout (N, out, T)."""
    with torch.no_grad():
        return model(x)[-1].permute(0, 2, 1).numpy().astype(np.uint8)


def _grid_network(seed):
    """A recurrent network whose float forward is exact integer arithmetic: weights on
    the 8-bit grid at the exponent the quantiser picks, current_decay 1 (u = input), no
    voltage leak, so the float forward equals the quantised network spike for spike."""
    model = _network(seed, neuron=CubaFloatParameters(1.0, 0.0, 1.0))
    with torch.no_grad():
        for layer in model.layers:
            w = torch.cat([layer.weight] + ([layer.weight_rec] if layer.recurrent else []), dim=1)
            e = int(np.floor(np.log2(254 / float(w.abs().max()))))
            for p in [layer.weight] + ([layer.weight_rec] if layer.recurrent else []):
                p.copy_((2 * torch.round(p * 2.0 ** e / 2)).clamp(-256, 254) / 2.0 ** e)
    return model


def test_spiking_network_recurrent_makes_hidden_layers_recurrent_only():
    model = _network(0)
    assert [layer.recurrent for layer in model.layers] == [True, True, False]
    assert model.layers[0].weight_rec.shape == (24, 24)
    net = quantize_model(model)
    assert [b.weight_rec is not None for b in net.layers] == [True, True, False]


def test_recurrent_layer_with_batch_norm_is_refused():
    with pytest.raises(ValueError, match="recurrent layer cannot have batch norm"):
        CubaDense(8, 8, CubaFloatParameters(1.0, 0.0, 1.0), SURROGATE, batch_norm=True, recurrent=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hardware_forward_of_recurrent_layers_equals_simulator(seed):
    model = _network(seed)
    with torch.no_grad():  # W_rec sets the layer's exponent (shared with W, as in netx)
        model.layers[0].weight_rec.mul_(2.0)
    set_hardware_aware(model, True)
    x = _inputs(seed)
    hw = _forward_outputs(model, x)
    net = quantize_model(model)
    sim = simulated_outputs(net, netx_samples(x.numpy(), net))
    assert sim.sum() > 20  # the output layer is not silent
    np.testing.assert_array_equal(hw, sim)
    # W_rec is on the path: without it the outputs change
    with torch.no_grad():
        for layer in model.layers[:-1]:
            layer.weight_rec.zero_()
    assert not np.array_equal(_forward_outputs(model, x), sim)


@pytest.mark.parametrize("seed", [0, 1])
def test_float_forward_of_recurrent_layers_equals_simulator_on_the_integer_grid(seed):
    model = _grid_network(seed)
    x = _inputs(seed)
    net = quantize_model(model)
    sim = simulated_outputs(net, netx_samples(x.numpy(), net))
    assert sim.sum() > 20
    np.testing.assert_array_equal(_forward_outputs(model, x), sim)


def test_sparse_backward_trains_recurrent_weights_as_dense_backward():
    """Same spikes and (up to float summation order) the same gradients for W and W_rec
    from the sparse backward as from dense BPTT with the same truncated surrogate."""
    dense, sparse = _network(3, backward="dense"), _network(3, backward="sparse")
    sparse.load_state_dict(dense.state_dict())
    x = _inputs(3, n=8)
    target = torch.arange(8) % 10
    grads = []
    for model in (dense, sparse):
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out[-1].sum(1) * 0.3, target)
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        assert all(o.sum() > 0 for o in out)
    names = [n for n, _ in dense.named_parameters()]
    assert "layers.0.weight_rec" in names and "layers.1.weight_rec" in names
    for name, gd, gs in zip(names, *grads):
        assert gd.abs().max() > 0, name
        torch.testing.assert_close(gs, gd, rtol=1e-4, atol=1e-5, msg=name)


def test_config_recurrent_key_and_its_checks():
    pytest.importorskip("pydantic")
    from neurodeploy.config import EXAMPLES_DIR, ConfigError, load_config, parse_config
    from neurodeploy.pipeline import build_model

    cfg = load_config(EXAMPLES_DIR / "digits_recurrent.yaml")
    assert cfg.model.recurrent
    model = build_model(cfg, (64,), 10)
    assert [layer.recurrent for layer in model.layers] == [True] * len(cfg.model.hidden) + [False]
    assert load_config(EXAMPLES_DIR / "shd.yaml").model.recurrent
    with pytest.raises(ConfigError, match="model.recurrent.*batch_norm"):
        parse_config({"model": {"recurrent": True, "batch_norm": True,
                                "neuron": {"current_decay": 1.0}}})
    with pytest.raises(ConfigError, match="model.recurrent.*hidden"):
        parse_config({"model": {"recurrent": True, "hidden": []}})


def test_recurrent_network_writes_dense_rec_and_reads_back(tmp_path):
    net = quantize_model(_network(4))
    path = write_netx(net, tmp_path / "rec.net")
    with h5py.File(path, "r") as f:
        assert f["layer/0/type"][0] == b"input"  # the file names its input shape
        assert f["layer/1/type"][0] == b"dense_rec" and f["layer/3/type"][0] == b"dense"
    back = read_netx(path)
    assert back.layers[0].neuron is None  # the neuron-less input block naming the input shape
    for a, b in zip(net.layers, back.layers[1:]):
        np.testing.assert_array_equal(a.weight, b.weight)
        assert (a.weight_rec is None) == (b.weight_rec is None)
        if a.weight_rec is not None:
            np.testing.assert_array_equal(a.weight_rec, b.weight_rec)


@requires_lava
@pytest.mark.lava
@pytest.mark.slow
def test_recurrent_float_forward_equals_lava_sample_by_sample(tmp_path):
    """The float forward (on the integer grid) against Lava's processes built by netx from
    the dense_rec file, samples one after another in one Lava run: each sample's outputs as
    if alone, although netx's reset leaves the recurrent synapse's last spikes behind."""
    from neurodeploy.sim.samples import lava_outputs

    model = _grid_network(7)
    x = _inputs(7, n=6)
    net = quantize_model(model)
    path = write_netx(net, tmp_path / "rec.net")
    lava = lava_outputs(path, net, netx_samples(x.numpy(), net))
    assert lava.sum() > 20
    np.testing.assert_array_equal(_forward_outputs(model, x), lava)


@requires_lava
@pytest.mark.lava
@pytest.mark.slow
def test_recurrent_pipeline_is_spike_exact_on_lava(tmp_path):
    from neurodeploy.config import parse_config
    from neurodeploy.pipeline import run_pipeline

    cfg = parse_config({
        "name": "tiny_recurrent", "seed": 1,
        "data": {"name": "digits", "steps": 8, "limit": 120},
        "model": {"hidden": [16], "recurrent": True, "surrogate": {"scale": 3.0, "band": 3.0}},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "backward": "sparse",
                  "hardware_aware_epochs": 1},
        "lava": {"samples": 16}, "hardware": {"config": None},
    })
    m = run_pipeline(cfg, tmp_path / "run").metrics
    with h5py.File(tmp_path / "run" / "model.net", "r") as f:
        assert f["layer/1/type"][0] == b"dense_rec"  # layer/0: the input block
    ag = m["agreement"]
    assert ag["samples"] == 16 and ag["output_spikes"] > 0
    assert ag["lava_vs_quantized"] == 1.0, ag["first_mismatch"]
    assert ag["lava_vs_training_forward"] == 1.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["agreement"] == ag
