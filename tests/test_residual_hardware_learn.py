"""Hardware-aware fine-tuning of residual networks with learned thresholds and
decays (train.hardware_aware_learn): they train, and the exported network's
simulated spikes are the chip-exact training forward's."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neurodeploy import api
from neurodeploy.config import parse_config
from neurodeploy.export.quantize_residual import quantize_residual_model
from neurodeploy.sim.samples import simulated_outputs
from neurodeploy.train.depth import tune_surrogate_heights
from neurodeploy.train.layers import spiking_layers
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
from neurodeploy.train.residual import ResidualNetwork
from neurodeploy.train.residual_hardware import set_residual_hardware_aware


def _spikes(shape, p, seed=0):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def _conv_resnet():
    torch.manual_seed(0)
    return ResidualNetwork((1, 6, 6), [dict(channels=4, kernel=3, padding=1)],
                           [dict(channels=4, count=1), dict(channels=6, count=1, stride=2)], [8], 3,
                           CubaFloatParameters(1.0, 0.1, 1.0), SurrogateParameters(3.0), batch_norm=True)


def _dense_resnet():
    torch.manual_seed(1)
    return ResidualNetwork((36,), [], [dict(channels=12, count=2)], [], 3, CubaFloatParameters(0.5, 0.1, 0.5),
                           SurrogateParameters(3.0), dense_stem=[12])


def _fine_tune(m, x, steps=6):
    y = torch.arange(len(x)) % 3
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(m.scores(x) * 0.3, y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("build, batch_norm", [(_conv_resnet, True), (_dense_resnet, False)])
def test_learned_thresholds_and_decays_train_and_export_exactly(build, batch_norm):
    m = build()
    x = _spikes((16, 10, 36), p=0.5)
    tune_surrogate_heights(m, x)
    if batch_norm:
        m.train()
        m(x)  # running statistics
        with torch.no_grad():  # an untrained head is near silent
            m.head[-1].norm.bias.add_(1.0)
    else:
        with torch.no_grad():  # excitatory readout: enough output spikes to compare
            m.head[-1].weight.abs_()
    m.eval()
    set_residual_hardware_aware(m, learn=("threshold", "decays"))
    layers = spiking_layers(m)
    names = {"threshold", "voltage_decay"} | (set() if batch_norm else {"current_decay"})
    assert all(set(l.learned) == names for l in layers)
    before = {(i, k): float(v.detach()) for i, l in enumerate(layers) for k, v in l.learned.items()}
    _fine_tune(m, x)
    after = {(i, k): float(v.detach()) for i, l in enumerate(layers) for k, v in l.learned.items()}
    moved = [key for key in before if after[key] != before[key]]
    assert {k for _, k in moved} == names  # every learned kind moves somewhere
    with torch.no_grad():
        want = m(x)[-1].permute(0, 2, 1).numpy()
    set_residual_hardware_aware(m, False)  # learned values into each layer's neuron parameters
    assert layers[0].neuron.threshold == pytest.approx(after[(0, "threshold")])
    if batch_norm:
        assert all(l.neuron.current_decay == 1.0 for l in layers)  # the norm still folds exactly
    net = quantize_residual_model(m)
    samples = x.reshape(16, 10, *m.input_shape)
    samples = (samples.permute(0, 4, 3, 2, 1) if batch_norm else samples.permute(0, 2, 1)).numpy().astype(np.int8)
    got = simulated_outputs(net, samples)
    assert want.sum() > 20 and np.array_equal(got, want)


def test_api_switches_residual_networks_and_refuses_unknown_learnables():
    m = _dense_resnet()
    api.hardware_aware(m, learn=("threshold",))
    assert m.hardware_aware and all(set(l.learned) == {"threshold"} for l in spiking_layers(m))
    api.hardware_aware(m, False)
    assert not m.hardware_aware
    with pytest.raises(ValueError, match="cannot learn"):
        set_residual_hardware_aware(_dense_resnet(), learn=("bias",))


def test_config_accepts_learned_neurons_with_blocks():
    cfg = parse_config({"model": {"input_shape": [1, 8, 8], "conv": [{"channels": 4, "kernel": 3}],
                                  "blocks": [{"channels": 4}]},
                        "train": {"hardware_aware_epochs": 1, "hardware_aware_learn": ["threshold", "decays"]}})
    assert cfg.train.hardware_aware_learn == ["threshold", "decays"]
