"""Hardware-aware training: the training forward is the chip's arithmetic."""
import numpy as np
import pytest
import torch
from conftest import requires_lava

from neurodeploy.export.netx import write_netx
from neurodeploy.export.quantize import quantize_model
from neurodeploy.sim.samples import output_windows, sample_stream, stream_steps
from neurodeploy.sim.samples import simulated_outputs as quantized_outputs
from neurodeploy.train.hardware import set_hardware_aware
from neurodeploy.train.layers import SpikingNetwork
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters


def _model(seed=0):
    torch.manual_seed(seed)
    m = SpikingNetwork((12,), [20], 5, CubaFloatParameters(0.2, 0.05, 1.0), SurrogateParameters(3.0))
    with torch.no_grad():
        for layer in m.layers:
            layer.weight.mul_(2.5)
    return m


def _inputs(seed=0, n=16, steps=15):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, steps, 12, generator=g) < 0.4).float()


def test_training_forward_equals_exported_network_bit_exactly():
    m = _model()
    x = _inputs()
    set_hardware_aware(m)
    with torch.no_grad():
        train_out = m(x)[-1].permute(0, 2, 1).numpy()
    sim_out = quantized_outputs(quantize_model(m), x.permute(0, 2, 1).numpy().astype(np.int64))
    assert train_out.sum() > 0
    assert np.array_equal(train_out, sim_out)


def test_hardware_forward_passes_gradients_to_every_layer():
    m = _model()
    set_hardware_aware(m)
    loss = m.scores(_inputs()).sum()
    loss.backward()
    for layer in m.layers:
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_fine_tuning_changes_spikes_and_stays_exact():
    m = _model(1)
    set_hardware_aware(m)
    x, y = _inputs(1, n=32), torch.arange(32) % 5
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    before = m(x)[-1].detach().clone()
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(m.scores(x) * 0.3, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = m(x)[-1]
    assert not torch.equal(before, after)
    sim_out = quantized_outputs(quantize_model(m), x.permute(0, 2, 1).numpy().astype(np.int64))
    assert np.array_equal(after.permute(0, 2, 1).numpy(), sim_out)


@requires_lava
@pytest.mark.lava
def test_training_forward_equals_lava(tmp_path):
    from neurodeploy.lava_adapter import run_netx

    m = _model(2)
    set_hardware_aware(m)
    x = _inputs(2, n=6)
    with torch.no_grad():
        train_out = m(x)[-1].permute(0, 2, 1).numpy()
    net = quantize_model(m)
    path = write_netx(net, tmp_path / "m.net")
    samples = x.permute(0, 2, 1).numpy().astype(np.int64)
    p, layers = samples.shape[-1], len(net.layers)
    run = run_netx(path, sample_stream(samples), steps=stream_steps(len(samples), p, layers), reset_interval=p)
    lava_out = output_windows(run.spikes, len(samples), p, layers)
    assert lava_out.sum() > 0
    assert np.array_equal(train_out, lava_out)


def test_learned_threshold_and_decays_train_and_export_exactly():
    from neurodeploy.train.hardware import sync_learned_neurons

    m = _model(3)
    set_hardware_aware(m, learn=("threshold", "decays"))
    x, y = _inputs(3, n=32), torch.arange(32) % 5
    before = [(float(l.learned["threshold"]), float(l.learned["current_decay"])) for l in m.layers]
    opt = torch.optim.Adam(m.parameters(), lr=0.02)
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(m.scores(x) * 0.3, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = [(float(l.learned["threshold"]), float(l.learned["current_decay"])) for l in m.layers]
    assert all(a[0] != b[0] and a[1] != b[1] for a, b in zip(after, before))
    with torch.no_grad():
        train_out = m(x)[-1].permute(0, 2, 1).numpy()
    sync_learned_neurons(m)
    assert m.layers[0].neuron.threshold == pytest.approx(after[0][0])
    sim_out = quantized_outputs(quantize_model(m), x.permute(0, 2, 1).numpy().astype(np.int64))
    assert train_out.sum() > 0 and np.array_equal(train_out, sim_out)


def test_unknown_learnable_is_an_error():
    with pytest.raises(ValueError, match="cannot learn"):
        set_hardware_aware(_model(), learn=("bias",))


def _batch_norm_model(seed=0):
    """A 12-20-5 network with batch norm on the hidden layer's input currents
    (current_decay 1.0, as batch norm needs), its running statistics trained away
    from the identity so that the fold matters."""
    torch.manual_seed(seed)
    m = SpikingNetwork((12,), [20], 5, CubaFloatParameters(1.0, 0.05, 1.0), SurrogateParameters(3.0),
                       batch_norm=True)
    with torch.no_grad():
        for layer in m.layers:
            layer.weight.mul_(2.5)
        norm = m.layers[0].norm
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-0.5, 0.8)
    m.train()
    for seed_ in range(3):  # running mean / variance from training batches
        m(_inputs(seed_ + 10))
    return m


def test_batch_norm_hardware_forward_equals_the_exported_network():
    """With batch norm, the hardware-aware forward runs the folded weights and bias
    export writes: its spikes equal the exported network's, bit for bit, before
    and after fine-tuning steps (gamma and beta learn through the fold)."""
    m = _batch_norm_model()
    assert quantize_model(m).layers[0].bias is not None
    set_hardware_aware(m)
    x, y = _inputs(2, n=24), torch.arange(24) % 5
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    gamma = m.layers[0].norm.weight.detach().clone()
    for step in range(3):
        with torch.no_grad():
            train_out = m(x)[-1].permute(0, 2, 1).numpy()
        sim_out = quantized_outputs(quantize_model(m), x.permute(0, 2, 1).numpy().astype(np.int64))
        assert train_out.sum() > 0
        assert np.array_equal(train_out, sim_out), f"step {step}"
        loss = torch.nn.functional.cross_entropy(m.scores(x) * 0.3, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(gamma, m.layers[0].norm.weight.detach())
