"""The Spiking Recurrent Cell: float equations, gradients, the fixed-point cell,
its netx extension block, and the hardware-aware forward against the simulator."""

import numpy as np
import pytest
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy import fixedpoint_src as fxs
from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.export.quantize_src import quantize_src_model
from neurodeploy.network import SrcNeuron
from neurodeploy.sim.samples import simulated_outputs
from neurodeploy.train.src import (
    SrcFloatParameters,
    SRCNetwork,
    src_initial_state,
    src_sequence,
    src_step,
)
from neurodeploy.train.src_hardware import set_src_hardware_aware


def _reference_src(a, bias, alpha=0.9, rho=3.0, r=2.0, r_s=-7.0, z=0.0, z_hyp=0.9, z_dep=0.0,
                   theta=0.5, h0=0.0):
    """The cell's equations, written out in float64 numpy, one neuron at a time."""
    b, t, n = a.shape
    out = np.zeros((b, t, n))
    for s in range(b):
        for j in range(n):
            i, h, hs = 0.0, h0, h0
            for k in range(t):
                i = alpha * i + a[s, k, j]
                x = rho * np.tanh(i / rho)
                h_new = z * h + (1 - z) * np.tanh(x + r * h + r_s * hs + bias[j])
                z_s = z_hyp if h <= theta else z_dep
                hs = z_s * hs + (1 - z_s) * h
                h = h_new
                out[s, k, j] = max(h, 0.0)
    return out


def test_float_forward_equals_float64_transcription_of_the_equations():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 3, (3, 40, 5))
    bias = rng.uniform(-7, -4, 5)
    for p in (SrcFloatParameters(), SrcFloatParameters(z=0.3, z_dep=0.2, gate_threshold=0.1, alpha=0.7,
                                                       initial_state=-1.0)):
        ours = src_sequence(torch.tensor(a), torch.tensor(bias), p).numpy()
        ref = _reference_src(a, bias, p.alpha, p.rho, p.r, p.r_s, p.z, p.z_hyp, p.z_dep, p.gate_threshold,
                             p.initial_state)
        assert np.abs(ours - ref).max() < 1e-6
        assert (ref > 0.5).any() and (ref == 0).any()  # spikes and silence both exercised


def test_cell_gradients_pass_gradcheck():
    torch.manual_seed(0)
    p = SrcFloatParameters(detach_recurrence=False)
    a = (torch.randn(2, 8, 3, dtype=torch.float64) * 3).requires_grad_()
    bias = torch.full((3,), -5.0, dtype=torch.float64, requires_grad=True)

    def states(a, bias):  # the differentiable cell: i, h, h_s at every step
        _, sts = src_sequence(a, bias, p, record=True)
        return torch.stack([torch.stack(s) for s in sts])

    assert torch.autograd.gradcheck(states, (a, bias), eps=1e-6, atol=1e-5)


def test_output_gradient_passes_straight_through_relu():
    p = SrcFloatParameters()
    a = torch.full((1, 3), -50.0, dtype=torch.float64, requires_grad=True)  # h = -1: s = 0
    s, _ = src_step(a, src_initial_state((1, 3), torch.float64), torch.full((3,), -6.0, dtype=torch.float64), p)
    assert torch.all(s == 0)
    s.sum().backward()
    assert torch.all(a.grad != 0)


def test_detached_recurrence_keeps_gradient_through_the_input_current_only():
    p = SrcFloatParameters()
    a = torch.zeros(1, 4, 1, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        a[0, 0, 0] = 5.0
    out = src_sequence(a, torch.tensor([-5.0], dtype=torch.float64), p)
    out[0, 3, 0].backward()
    assert a.grad[0, 0, 0] != 0  # through i[t] = alpha i[t-1] + a[t]


def test_fixed_point_decay_equals_fixedpoint_module():
    rng = np.random.default_rng(1)
    x = rng.integers(-(1 << 23), 1 << 23, 1000)
    d = rng.integers(1, 4097, 1000)
    assert np.array_equal(fxs.decay(x, d), fx.decay(torch.from_numpy(x), torch.from_numpy(d)).numpy())


def test_tables_fit_their_bit_widths_and_follow_tanh():
    h = fxs.tanh_table()
    xt = fxs.rho_table(3.0, fxs.x_table_shift(3.0, 6), 6)
    for t in (h, xt):
        assert t.size == fxs.TABLE_SIZE and t.min() >= 0 and t.max() <= fxs.TABLE_RANGE[1]
        assert np.all(np.diff(t) >= 0)
    p = np.arange(0, 4 * fxs.UNIT, 7)
    approx = fxs.odd_lookup(p, h, fxs.DEFAULT_H_SHIFT) / fxs.UNIT
    assert np.abs(approx - np.tanh(p / fxs.UNIT)).max() < 1.0 / 64
    assert xt[-1] > 0.999 * 3 * fxs.UNIT  # rho saturation reached within the table


@pytest.mark.parametrize("field,value", [("gain_fast", 200), ("input_decay", 0), ("update_decay", 5000),
                                         ("gate_threshold", 5000), ("x_shift", 30), ("message_shift", 13)])
def test_bit_widths_are_checked_and_errors_name_the_field(field, value):
    q = fxs.quantize_parameters(alpha=0.9, rho=3, r=2, r_s=-7, z=0, z_hyp=0.9, z_dep=0,
                                gate_threshold=0.5, weight_exponent=6, input_shift=6)
    kw = dict(q.__dict__, **{field: value})
    with pytest.raises(fx.BitWidthError, match=field):
        SrcNeuron(**kw)
    bad_table = dict(q.__dict__, h_table=(70000,) * 256)
    with pytest.raises(fx.BitWidthError, match="h_table"):
        SrcNeuron(**bad_table)


def test_fixed_point_cell_follows_the_float_cell():
    """Same input current, float vs integer cell: h agrees within the tables'
    resolution and the spikes (h > 0) agree at almost every step."""
    rng = np.random.default_rng(2)
    e = 6
    q = fxs.quantize_parameters(alpha=0.9, rho=3, r=2, r_s=-7, z=0, z_hyp=0.9, z_dep=0,
                                gate_threshold=0.5, weight_exponent=e, input_shift=0)
    a_int = rng.integers(0, 2500, (200, 64)) * (rng.random((200, 64)) < 0.5)  # i units 2**(e + 6)
    bias = -5.0
    st = fxs.initial_state(64, q.reset_state)
    hs_int = []
    for k in range(200):
        _, st = fxs.src_step(a_int[k], st, q, np.full(64, fxs.quantize_bias(np.array([bias]))[0]))
        hs_int.append(st.fast / fxs.UNIT)
    _, sts = src_sequence(torch.tensor(a_int[None] / fxs.units(e)), torch.full((64,), bias, dtype=torch.float64),
                          SrcFloatParameters(), record=True)
    h_float = np.stack([s.fast[0].numpy() for s in sts])
    h_int = np.stack(hs_int)
    assert ((h_float > 0) == (h_int > 0)).mean() > 0.95
    assert (h_float > 0).mean() > 0.05


def _model(seed=0, hidden=(6, 5)):
    torch.manual_seed(seed)
    m = SRCNetwork((4,), list(hidden), 3)
    with torch.no_grad():
        for layer in m.layers:
            layer.weight.mul_(6.0)
    return m


def test_netx_extension_block_round_trips(tmp_path):
    net = quantize_src_model(_model())
    path = write_netx(net, tmp_path / "src.net")
    import h5py
    with h5py.File(path) as f:
        assert f["layer/1/neuron/type"][()].decode() == "SRC"
        assert f["layer/1/neuron/hTable"].shape == (256,)
        assert int(f["layer/1/neuron/messageBits"][()]) == 7
    back = read_netx(path)
    assert back.layers[0].neuron is None  # the neuron-less input block naming the input shape
    for a, b in zip(net.layers, back.layers[1:]):
        assert a.neuron == b.neuron
        assert np.array_equal(a.weight, b.weight)
        assert (a.bias is None and b.bias is None) or np.array_equal(a.bias, b.bias)


def test_netx_reader_names_the_bad_src_field(tmp_path):
    import h5py
    path = write_netx(quantize_src_model(_model()), tmp_path / "src.net")
    with h5py.File(path, "a") as f:
        del f["layer/1/neuron/gainSlow"]
        f["layer/1/neuron/gainSlow"] = 999
    with pytest.raises(ValueError, match=r"layer 1.*gain_slow"):
        read_netx(path)


@pytest.mark.parametrize("output", ["graded", "binary"])
def test_hardware_aware_forward_equals_the_simulator_bit_for_bit(output):
    m = _model(hidden=(7, 6))
    m.output = output
    rng = np.random.default_rng(3)
    x = (rng.random((5, 16, 4)) < 0.5).astype(np.float32)
    net = quantize_src_model(m)
    sim = simulated_outputs(net, x.transpose(0, 2, 1).astype(np.int64))  # (n, classes, steps)
    set_src_hardware_aware(m, True)
    out = m(torch.from_numpy(x))[-1]  # readout currents in float units
    ints = (out.detach().numpy() * fxs.units(net.metadata["weight_exponents"][-1])).round()
    assert np.array_equal(ints.transpose(0, 2, 1), sim)
    assert np.abs(sim).max() > 0
    m.scores(torch.from_numpy(x)).sum().backward()
    assert all(float(l.weight.grad.abs().sum()) > 0 for l in m.layers)


def test_map_reports_src_resources_as_an_estimate(tmp_path):
    import json

    from click.testing import CliRunner

    from neurodeploy.cli import main
    from neurodeploy.hardware.src_resources import OPS_PER_NEURON_STEP

    path = write_netx(quantize_src_model(_model(hidden=(6, 5))), tmp_path / "src.net")
    res = CliRunner().invoke(main, ["map", str(path), "--json", str(tmp_path / "map.json")])
    assert res.exit_code == 0, res.output
    assert "ESTIMATE" in res.output
    rows = json.loads((tmp_path / "map.json").read_text())["src_resources"]
    assert [r["neurons"] for r in rows] == [6, 5, 3]
    assert all(r["estimate"] and r["state_words_per_neuron"] == 4 for r in rows)
    assert rows[0]["ops_per_step"] == 6 * OPS_PER_NEURON_STEP
    assert rows[0]["table_bits_per_core"] == 2 * 256 * 16 + 12 * 16
