"""Residual CUBA-LIF networks: the block's float forward, surrogate tuning through
shortcuts, quantisation, the netx extension (round trip, malformed files) and the
simulator's shortcut timeline. Spike-exactness against Lava: test_residual_lava.py."""

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from residual_nets import random_conv_resnet, random_dense_resnet

from neurodeploy.config import ConfigError, parse_config
from neurodeploy.export.netx import NetxFormatError, read_netx, write_netx
from neurodeploy.export.quantize_residual import quantize_residual_model
from neurodeploy.network import CubaNeuron, Dense, Network, Shortcut, aligned_delay
from neurodeploy.sim.samples import simulated_outputs
from neurodeploy.sim.simulator import simulate
from neurodeploy.train.depth import backward_gains, tune_surrogate_heights
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters, cuba_float_sequence
from neurodeploy.train.residual import CubaResidualBlock, ResidualNetwork

NEURON = CubaFloatParameters(current_decay=1.0, voltage_decay=0.1, threshold=1.0)
SURROGATE = SurrogateParameters(scale=3.0)


def _spikes(shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def _small_resnet(batch_norm=True, shortcuts=True, seed=0):
    torch.manual_seed(seed)
    return ResidualNetwork((1, 6, 6), [dict(channels=4, kernel=3, padding=1)],
                           [dict(channels=4, count=2), dict(channels=6, count=1, stride=2)], [8], 3,
                           NEURON, SURROGATE, batch_norm=batch_norm, shortcuts=shortcuts)


def test_identity_shortcut_adds_input_spikes_to_second_layer_current():
    torch.manual_seed(0)
    block = CubaResidualBlock((3, 5, 5), 3, neuron=NEURON, surrogate=SURROGATE)
    x = _spikes((2, 6, 3, 5, 5))
    s1, s2 = block(x)
    assert block.identity
    c = torch.nn.functional.conv2d(s1.reshape(12, 3, 5, 5), block.second.weight, padding=1).reshape(2, 6, -1)
    want = cuba_float_sequence(c + x.reshape(2, 6, -1), NEURON, SURROGATE).reshape(s2.shape)
    assert torch.equal(s2, want)
    plain = CubaResidualBlock((3, 5, 5), 3, neuron=NEURON, surrogate=SURROGATE, shortcut=False)
    plain.load_state_dict(block.state_dict())
    assert torch.equal(plain(x)[1], cuba_float_sequence(c, NEURON, SURROGATE).reshape(s2.shape))


def test_projection_shortcut_where_the_block_changes_shape():
    torch.manual_seed(0)
    block = CubaResidualBlock((3, 6, 6), 5, stride=2, neuron=NEURON, surrogate=SURROGATE, batch_norm=True)
    assert not block.identity and block.projection.shape == (5, 3, 1, 1)
    assert block(_spikes((2, 4, 3, 6, 6)))[1].shape == (2, 4, 5, 3, 3)
    dense = CubaResidualBlock((7,), 4, neuron=NEURON, surrogate=SURROGATE)
    assert dense.projection.shape == (4, 7)
    with pytest.raises(ValueError, match="no stride"):
        CubaResidualBlock((7,), 4, stride=2, neuron=NEURON, surrogate=SURROGATE)


def test_resnet_counts_spiking_layers_and_returns_each():
    m = _small_resnet()
    out = m(_spikes((2, 5, 36)))
    assert m.num_spiking_layers == len(out) == 1 + 2 * 3 + 2
    assert out[-1].shape == (2, 5, 3)


def test_tuned_heights_give_every_layer_and_block_unit_gain():
    m = _small_resnet()
    x = _spikes((16, 8, 1, 6, 6), p=0.5)
    heights = tune_surrogate_heights(m, x)
    assert len(heights) == m.num_spiking_layers
    gains = backward_gains(m, x)
    assert np.allclose(gains, 1.0, rtol=1e-4), gains


def test_quantized_block_and_shortcut_share_one_exponent():
    m = _small_resnet()
    m(_spikes((8, 6, 36), p=0.5))  # batch statistics
    m.eval()
    net = quantize_residual_model(m)
    assert [sc.delay for sc in net.shortcuts] == [1, 1, 1]
    e = net.metadata["weight_exponents"]
    first = net.shortcuts[0]  # identity: 2**e of the target layer, on the diagonal
    k = [i for i, _ in net.neuron_layers].index(first.target)
    w = first.weight[:, :, 0, 0]
    assert np.array_equal(w, np.eye(4, dtype=np.int64) * round(2.0 ** e[k]))
    assert net.shortcuts[2].weight.shape == (6, 4, 1, 1) and net.shortcuts[2].stride == (2, 2)


def test_netx_round_trip_is_exact_and_marks_residual_blocks(tmp_path):
    net = random_conv_resnet(5, blocks=2, bias=True)
    path = write_netx(net, tmp_path / "r.net")
    back = read_netx(path)
    with h5py.File(path) as f:
        types = [f[f"layer/{i}/type"][0].decode() for i in range(len(f["layer"]))]
    assert types.count("conv_res") == 2 and "shortcut" in f_keys(path, 3)
    moved = net.with_input_block()
    assert len(back.shortcuts) == len(moved.shortcuts)
    for a, b in zip(moved.shortcuts, back.shortcuts):
        assert (a.source, a.target, a.stride, a.padding, a.delay) == (b.source, b.target, b.stride, b.padding, b.delay)
        assert np.array_equal(a.weight, b.weight)
    for a, b in zip(moved.layers, back.layers):
        assert type(a) is type(b)
        if hasattr(a, "weight"):
            assert np.array_equal(a.weight, b.weight)
    x = (np.random.default_rng(0).random((3, *net.input_shape_netx, 10)) < 0.4).astype(np.int8)
    assert np.array_equal(simulate(net, x).spikes, simulate(back, x).spikes)


def f_keys(path, i):
    with h5py.File(path) as f:
        return list(f[f"layer/{i}"].keys())


def test_malformed_shortcut_groups_are_one_line_errors(tmp_path):
    net = random_dense_resnet(1, blocks=1)
    path = write_netx(net, tmp_path / "r.net")
    with h5py.File(path, "a") as f:
        del f["layer/3/shortcut/0/delay"]
    with pytest.raises(NetxFormatError, match=r"layer 3 \(dense_res\)/shortcut/0: missing dataset 'delay'"):
        read_netx(path)
    path = write_netx(net, tmp_path / "s.net")
    with h5py.File(path, "a") as f:
        del f["layer/3/shortcut/0/weight"]
        f["layer/3/shortcut/0/weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(NetxFormatError, match="dense weight shape"):
        read_netx(path)
    with pytest.raises(ValueError, match="read whole"):
        read_netx(write_netx(net, tmp_path / "t.net"), num_layers=4)


def test_shortcut_alone_delivers_its_source_spikes_after_one_plus_delay_steps():
    """Target with zero own weights and a unit shortcut of large weight: it fires
    exactly 1 + delay steps after each source spike (its input layer fires when
    the input does, one step after it)."""
    src = Dense(np.eye(3, dtype=np.int64) * 200, CubaNeuron(4096, 4095, 10))
    mid = Dense(np.zeros((3, 3), np.int64), CubaNeuron(4096, 4095, 10))
    tgt = Dense(np.zeros((3, 3), np.int64), CubaNeuron(4096, 4095, 10))
    x = np.zeros((3, 12), np.int8)
    x[0, 1] = x[2, 5] = 1
    for delay in (0, 1, 3):
        net = Network([src, mid, tgt], (3,),
                      shortcuts=[Shortcut(0, 2, np.eye(3, dtype=np.int64) * 200, delay=delay)])
        out = simulate(net, x, record=True)
        s0 = out.records["s/0"]
        assert s0[0, 2] and s0[2, 6] and s0.sum() == 2  # one synapse step after the input
        assert np.array_equal(out.spikes, np.roll(s0, 1 + delay, axis=-1) * (np.arange(12) >= 1 + delay))


def test_zero_shortcuts_simulate_as_the_chain():
    net = random_conv_resnet(2, blocks=2, bias=True)
    zero = dataclasses.replace(net, shortcuts=tuple(dataclasses.replace(sc, weight=sc.weight * 0)
                                                    for sc in net.shortcuts))
    x = (np.random.default_rng(1).random((4, *net.input_shape_netx, 15)) < 0.4).astype(np.int8)
    a, b = simulate(zero, x, reset_interval=5), simulate(net.chain(), x, reset_interval=5)
    assert np.array_equal(a.spikes, b.spikes)
    assert not np.array_equal(simulate(net, x, reset_interval=5).spikes, a.spikes)


def test_simulation_is_the_same_in_any_chunking():
    net = random_conv_resnet(9, blocks=2)
    x = (np.random.default_rng(2).random((2, *net.input_shape_netx, 17)) < 0.4).astype(np.int8)
    whole = simulate(net, x, record=True)
    for chunk in (1, 3, 8):
        part = simulate(net, x, record=True, chunk_steps=chunk)
        assert np.array_equal(whole.spikes, part.spikes)
        assert all(np.array_equal(whole.records[k], part.records[k]) for k in whole.records)


def test_shortcut_validation_names_the_shortcut():
    net = random_dense_resnet(0, blocks=1)
    with pytest.raises(ValueError, match=r"shortcut 2 -> 1: the source block must come before"):
        Shortcut(2, 1, np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"shortcut 0 -> 2: dense weight shape"):
        dataclasses.replace(net, shortcuts=(Shortcut(0, 2, np.zeros((1, 1))),))
    assert aligned_delay(net.layers, 0, 2) == 1


def test_config_blocks_and_what_they_refuse():
    cfg = parse_config({"model": {"input_shape": [1, 8, 8], "conv": [{"channels": 4, "kernel": 3, "padding": 1}],
                                  "blocks": [{"channels": 4, "count": 2}], "batch_norm": True,
                                  "neuron": {"current_decay": 1.0}}})
    assert cfg.model.blocks[0].count == 2 and cfg.model.shortcuts
    with pytest.raises(ConfigError, match="model.blocks .* model.recurrent is not supported"):
        parse_config({"model": {"blocks": [{"channels": 4}], "conv": [{"channels": 4, "kernel": 3}],
                                "recurrent": True}})
    with pytest.raises(ConfigError, match=r"put a stem layer before the first block \(model.conv"):
        parse_config({"model": {"blocks": [{"channels": 4}]}})
    with pytest.raises(ConfigError, match=r"model.blocks.0.channels"):
        parse_config({"model": {"blocks": [{"channels": 0}]}})


def test_tuning_sees_batch_norm_gain_and_keeps_its_running_statistics():
    """Batch norm's backward scales gradients by gamma / std of the batch: tuning
    measures through it (in training mode), so the trained gradients keep unit gain,
    and leaves the norms' running statistics as they were."""
    m = _small_resnet()
    x = _spikes((16, 8, 1, 6, 6), p=0.5)
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    tune_surrogate_heights(m, x)
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    m.train()
    out = m(x)
    torch.manual_seed(0)
    g = torch.randn_like(out[-1])
    grads = torch.autograd.grad(out[-1], [m.stem[0].weight, m.head[-1].weight], grad_outputs=g)
    ratio = float(grads[0].norm() / grads[1].norm())
    assert 1e-2 < ratio < 1e2, ratio  # neither vanishing nor exploding over 9 layers


def test_map_counts_each_shortcut_on_its_target():
    from neurodeploy.hardware.activity import network_fan_outs
    from neurodeploy.hardware.config import load_hardware_config
    from neurodeploy.hardware.mapper import map_network, shortcut_synapses

    net = random_conv_resnet(4, blocks=2)
    hw = load_hardware_config("loihi2")
    res, chain = map_network(net, hw), map_network(net.chain(), hw)
    extra = sum(shortcut_synapses(net, sc)[0] for sc in net.shortcuts)
    assert res.synapses - chain.synapses == extra > 0
    by = {p.index: p for p in res.layers}
    for sc in net.shortcuts:
        assert by[sc.target].kind == "conv+shortcut"
        assert by[sc.target].fan_in == {p.index: p for p in chain.layers}[sc.target].fan_in + sc.weight[0].size
    fan = dict(network_fan_outs(net))
    fan_chain = dict(network_fan_outs(net.chain()))
    src = net.shortcuts[0].source
    assert fan[str(src)].sum() - fan_chain[str(src)].sum() == pytest.approx(shortcut_synapses(net, net.shortcuts[0])[0])


def test_hardware_aware_forward_gives_the_exported_networks_spikes():
    """The chip-exact training forward (train.residual_hardware) and the simulator of
    the exported network (each sample in its own window, aligned shortcut delays)
    give the same output spikes; gradients reach the stem."""
    m = _small_resnet()
    x = _spikes((16, 10, 36), p=0.5)
    tune_surrogate_heights(m, x)
    m.train()
    m(x)  # running statistics
    m.eval()
    with torch.no_grad():  # an untrained head is near silent
        m.head[-1].norm.bias.add_(1.0)
        m.head[0].norm.bias.add_(0.5)
    net = quantize_residual_model(m)
    m.hardware_aware = True
    out = m(x)
    want = out[-1].permute(0, 2, 1).detach().numpy()
    samples = x.reshape(16, 10, 1, 6, 6).permute(0, 4, 3, 2, 1).numpy().astype(np.int8)
    got = simulated_outputs(net, samples)
    assert want.sum() > 50
    assert np.array_equal(got, want)
    out[-1].sum().backward()
    assert float(m.stem[0].weight.grad.norm()) > 0
