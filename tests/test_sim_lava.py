"""Simulator vs Lava's fixed-point process models (the reference), on random
networks of every block type and on lava-dl's own networks. Slow: each Lava
run costs seconds."""

import dataclasses
import warnings

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy import fixedpoint as fx
from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Input, Network, SigmaDeltaNeuron
from neurodeploy.sim.simulator import simulate

pytestmark = [pytest.mark.slow, pytest.mark.lava]
lava_adapter = pytest.importorskip("neurodeploy.lava_adapter")
if not lava_adapter.lava_available():
    pytest.skip("Lava is not importable here", allow_module_level=True)

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def _compare(path, x, steps, **kw):
    skip, bits = kw.pop("skip_layers", 0), kw.pop("input_message_bits", 0)
    net = read_netx(path, skip_layers=skip)
    if bits:
        net = dataclasses.replace(net, input_message_bits=bits)
    probe = kw.pop("probe", True)
    lava = lava_adapter.run_netx(path, x, steps=steps, probe=probe, skip_layers=skip,
                                 input_message_bits=bits, **kw)
    ours = simulate(net, x[None], steps=steps, record=True, **kw)
    assert np.array_equal(ours.spikes[0], lava.spikes), "output spikes differ"
    neuron_blocks = [i for i, b in enumerate(net.layers)
                     if not isinstance(b, Flatten) and not (isinstance(b, Input) and b.neuron is None)]
    for j, i in enumerate(neuron_blocks):
        for var in ("u", "v", "s"):
            if f"{var}/{j}" in lava.probes and f"{var}/{i}" in ours.records:
                assert np.array_equal(ours.records[f"{var}/{i}"][0], lava.probes[f"{var}/{j}"]), (var, i)
    return ours


def _weights(rng, shape, sign, odd):
    w = rng.integers(-128, 128, shape) * (1 if odd else 2)
    if sign == "exc":  # single-sign layers: [0, 255] and [-256, -1]
        w = np.minimum(np.abs(w), 255)
    elif sign == "inh":
        w = np.maximum(-np.abs(w) - 1, -256)
    if not odd and sign != "mixed":
        w = (w // 2) * 2
    return w


def _neuron(rng, extreme):
    if extreme:
        return CubaNeuron(int(rng.choice([4096, 1, 2048])), int(rng.choice([0, 4095])),
                          int(rng.choice([0, 131071, 3])))
    return CubaNeuron(int(rng.integers(1, 4097)), int(rng.integers(0, 4096)), int(rng.integers(0, 300)))


def _write_raw_weights(path, weights):
    """Overwrite stored weights (odd mixed-sign values, as other exporters write)."""
    with h5py.File(path, "a") as f:
        for i, w in weights.items():
            del f[f"layer/{i}/weight"]
            f[f"layer/{i}/weight"] = w.astype(np.float32)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), sign=st.sampled_from(["mixed", "exc", "inh"]),
       odd=st.booleans(), extreme=st.booleans(), input_layer=st.booleans(),
       scale=st.sampled_from([1, 8, 64]), reset=st.sampled_from([None, 5]))
def test_random_dense_networks_match_lava(tmp_path_factory, seed, sign, odd, extreme, input_layer,
                                          scale, reset):
    rng = np.random.default_rng(seed)
    n_in, n_h, n_out = 6, int(rng.integers(3, 9)), 4
    w1 = _weights(rng, (n_h, n_in), sign, odd) // scale
    w2 = _weights(rng, (n_out, n_h), "mixed", odd)
    layers = []
    if input_layer:
        layers.append(Input(shape=(n_in,), neuron=_neuron(rng, extreme)))
    bias = rng.integers(-4096, 4096, n_h) if extreme else None
    # the writer takes only chip-exact weights; the raw ones (odd, -256) are stored after
    layers += [Dense(weight=fx.effective_weights(w1), neuron=_neuron(rng, extreme), bias=bias),
               Dense(weight=(w2 // 2) * 2, neuron=_neuron(rng, False))]
    path = tmp_path_factory.mktemp("d") / "net.net"
    write_netx(Network(layers=tuple(layers), input_shape=(n_in,)), path)
    k = 1  # layer/0: the input block, with neurons or (written for every file) without
    _write_raw_weights(path, {k: w1, k + 1: w2})
    T = 12
    if input_layer:  # graded input into a_in, large enough to wrap u / saturate v
        x = rng.integers(-(1 << 15), 1 << 15, (n_in, T)) if extreme else rng.integers(-300, 300, (n_in, T))
    else:
        x = (rng.random((n_in, T)) < 0.5).astype(np.int32)
    _compare(path, x, steps=T + 5, reset_interval=reset)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1]),
       dilation=st.sampled_from([1, 2]), groups=st.sampled_from([1, 2]))
def test_random_conv_networks_match_lava(tmp_path_factory, seed, stride, padding, dilation, groups):
    rng = np.random.default_rng(seed)
    c_in, h, w, c_out = 2, 7, 6, 4
    kw = rng.integers(-30, 30, (c_out, c_in // groups, 3, 2)) * 2
    oh = (h + 2 * padding - dilation * 2 - 1) // stride + 1
    ow = (w + 2 * padding - dilation * 1 - 1) // stride + 1
    conv = Conv(weight=kw, neuron=_neuron(rng, False), shape=(c_out, oh, ow), stride=(stride, stride),
                padding=(padding, padding), dilation=(dilation, dilation), groups=groups,
                bias=rng.integers(-50, 50, c_out))
    dense = Dense(weight=rng.integers(-60, 60, (3, c_out * oh * ow)) * 2, neuron=_neuron(rng, False))
    net = Network(layers=(Input(shape=(c_in, h, w), neuron=CubaNeuron(4096, 0, 0)), conv,
                          Flatten(shape=(c_out * oh * ow,)), dense), input_shape=(c_in, h, w))
    path = tmp_path_factory.mktemp("c") / "conv.net"
    write_netx(net, path)
    x = (rng.random((w, h, c_in, 8)) < 0.5).astype(np.int32) * rng.integers(1, 3)
    _compare(path, x, steps=10)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), delays=st.booleans())
def test_recurrent_and_delayed_dense_match_lava(tmp_path_factory, seed, delays):
    rng = np.random.default_rng(seed)
    n_in, n = 5, 6
    if delays:
        layers = (Dense(weight=rng.integers(-60, 60, (n, n_in)) * 2, neuron=_neuron(rng, False),
                        delay=rng.integers(0, 6, n)),
                  Dense(weight=rng.integers(-60, 60, (3, n)) * 2, neuron=_neuron(rng, False),
                        delay=rng.integers(0, 4, 3)))
    else:
        layers = (Dense(weight=rng.integers(-60, 60, (n, n_in)) * 2, neuron=_neuron(rng, False),
                        weight_rec=rng.integers(-60, 60, (n, n)) * 2),
                  Dense(weight=rng.integers(-60, 60, (3, n)) * 2, neuron=_neuron(rng, False)))
    path = tmp_path_factory.mktemp("r") / "rec.net"
    write_netx(Network(layers=layers, input_shape=(n_in,)), path)
    x = (rng.random((n_in, 10)) < 0.5).astype(np.int32)
    _compare(path, x, steps=16)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), sigma_out=st.booleans(), recurrent=st.booleans())
def test_random_sigma_delta_networks_match_lava(tmp_path_factory, seed, sigma_out, recurrent):
    rng = np.random.default_rng(seed)
    rec = rng.integers(-60, 60, (6, 6)) * 2 if recurrent else None
    layers = (Input(shape=(5,), neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 4)))),
              Dense(weight=rng.integers(-60, 60, (6, 5)) * 2, bias=rng.integers(-20, 20, 6), weight_rec=rec,
                    neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 30)))),
              Dense(weight=rng.integers(-60, 60, (3, 6)) * 2,
                    neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 30)), sigma_output=sigma_out)))
    path = tmp_path_factory.mktemp("s") / "sdnn.net"
    write_netx(Network(layers=layers, input_shape=(5,)), path)
    x = rng.integers(-100, 100, (5, 9))
    _compare(path, x, steps=12, probe=False)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), wmax=st.sampled_from([60, 30, 127]), sigma_out=st.booleans())
def test_random_sigma_delta_networks_with_delays_match_lava(tmp_path_factory, seed, wmax, sigma_out):
    """Graded messages through dense blocks with axonal delays (netx's DelayDense:
    int32 products, int64 sums and shift, an int32 buffer). wmax 30 and 127: messages
    up to 2**18, so products wrap at 32 bits and sums pass 2**31 before the shift
    (wmax 30: netx's weight_exp -2)."""
    rng = np.random.default_rng(seed)
    big = wmax != 60
    layers = (Input(shape=(5,), neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 4)))),
              Dense(weight=rng.integers(-wmax, wmax, (6, 5)) * 2, bias=rng.integers(-20, 20, 6),
                    neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 30))), delay=rng.integers(0, 5, 6)),
              Dense(weight=rng.integers(-wmax, wmax, (3, 6)) * 2, delay=rng.integers(0, 4, 3),
                    neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 30)), sigma_output=sigma_out)))
    path = tmp_path_factory.mktemp("sdd") / "sdnn_delay.net"
    write_netx(Network(layers=layers, input_shape=(5,)), path)
    top = 1 << 18 if big else 100
    _compare(path, rng.integers(-top, top, (5, 9)), steps=25, probe=False)


def _sigma_delta_conv_net(rng, stride, groups, sigma_out):
    c_in, h, w, c_out = 2, 6, 7, 4
    conv = Conv(weight=rng.integers(-60, 60, (c_out, c_in // groups, 3, 3)) * 2,
                neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 30))),
                shape=(c_out, (h - 3) // stride + 1, (w - 3) // stride + 1), stride=(stride, stride),
                groups=groups, bias=rng.integers(-50, 50, c_out))
    n = int(np.prod(conv.shape))
    dense = Dense(weight=rng.integers(-60, 60, (3, n)) * 2,
                  neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 30)), sigma_output=sigma_out))
    return Network(layers=(Input(shape=(c_in, h, w), neuron=SigmaDeltaNeuron(threshold=int(rng.integers(0, 4)))),
                           conv, Flatten(shape=(n,)), dense), input_shape=(c_in, h, w))


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), stride=st.sampled_from([1, 2]), groups=st.sampled_from([1, 2]),
       sigma_out=st.booleans(), scale=st.sampled_from([1, 255]))
def test_random_sigma_delta_conv_networks_match_lava(tmp_path_factory, seed, stride, groups, sigma_out,
                                                     scale):
    """Graded messages into conv blocks (the simulator's conv runs as a float32 conv
    of base-2**p digits here). scale 255: conv sums up to ~2**29, most of which
    float32 cannot hold; Lava's Conv model sums in float64 (scipy) and stays exact
    below int32, so the simulator matches it and must not warn."""
    from neurodeploy.sim.simulator import LavaConvOverflowWarning
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("sc") / "sdconv.net"
    write_netx(_sigma_delta_conv_net(rng, stride, groups, sigma_out), path)
    x = rng.integers(-20, 20, (7, 6, 2, 8)) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error", LavaConvOverflowWarning)
        _compare(path, x, steps=12, probe=False)


def test_lava_conv_sums_past_float32_are_exact_and_past_int32_are_not(tmp_path):
    """Graded messages straight into a conv (input_message_bits 16), through a
    sigma-output neuron that shows the sums. Sums of 2**27 - 2**30 that float32 cannot
    hold: Lava's Conv (scipy, float64) gives them exactly, wrapped to 24 bits, as the
    simulator does, with no warning. A sum beyond int32: Lava's cast to int32 makes it
    -2**31 (0 after the wrap), the simulator keeps it and warns, naming the layer."""
    from neurodeploy.sim.simulator import LavaConvOverflowWarning
    conv = Conv(weight=np.array([[[[1, 3]]]]), neuron=SigmaDeltaNeuron(threshold=0, sigma_output=True),
                shape=(1, 1, 2))
    path = write_netx(Network(layers=(conv,), input_shape=(1, 1, 3)), tmp_path / "c.net")
    net = dataclasses.replace(read_netx(path, input_shape=(1, 1, 3)), input_message_bits=16)
    x = np.zeros((3, 1, 1, 3), np.int64)  # netx (x, y, c, T): one frame, then silence
    x[:, 0, 0, 0] = [(1 << 26) + 1, (1 << 25) + 3, (1 << 28) + 5]
    sums = np.array([x[0, 0, 0, 0] + 3 * x[1, 0, 0, 0], x[1, 0, 0, 0] + 3 * x[2, 0, 0, 0]])
    assert np.all(sums.astype(np.float32).astype(np.int64) != sums)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LavaConvOverflowWarning)
        ours = simulate(net, x, steps=3).spikes
    lava = lava_adapter.run_netx(path, x, steps=3, input_message_bits=16).spikes
    assert np.array_equal(ours, lava)
    assert np.array_equal(ours[:, 0, 0, 1], fx.wrap_signed(torch.from_numpy(sums), 24).numpy())
    x[2, 0, 0, 0] = 1 << 30  # 2**25 + 3 * 2**30 > 2**31
    with pytest.warns(LavaConvOverflowWarning, match="layer 1 \\(conv\\).*int32"):
        ours = simulate(net, x, steps=3).spikes
    lava = lava_adapter.run_netx(path, x, steps=3, input_message_bits=16).spikes
    assert lava[1, 0, 0, 1] == 0 and ours[1, 0, 0, 1] != 0
    assert np.array_equal(ours[0], lava[0])


def test_lava_conv_sums_beyond_int32_and_the_simulator_says_so(tmp_path):
    """Messages near 2**23: conv sums beyond 2**31. Lava's Conv model casts its sums
    to int32 (such sums become -2**31, then 0 after the 24-bit wrap), so its spikes
    leave the exact integer arithmetic the simulator keeps; the simulator warns,
    naming the layer."""
    from neurodeploy.sim.simulator import LavaConvOverflowWarning
    rng = np.random.default_rng(0)
    path = tmp_path / "sdconv_big.net"
    write_netx(_sigma_delta_conv_net(rng, 1, 1, False), path)
    x = rng.integers(-(1 << 17), 1 << 17, (7, 6, 2, 8))
    with pytest.warns(LavaConvOverflowWarning, match="layer 1 \\(conv\\)"):
        ours = simulate(read_netx(path), x[None], steps=12).spikes[0]
    lava = lava_adapter.run_netx(path, x, steps=12).spikes
    assert np.array_equal(lava[..., :2], ours[..., :2])  # before the conv's output arrives
    assert not np.array_equal(lava, ours)


@pytest.mark.parametrize("sigma_out,wmax", [(False, 127), (True, 127), (False, 30)])
def test_sigma_delta_registers_wrap_at_32_bits_as_lava(tmp_path, monkeypatch, sigma_out, wmax):
    """Large graded messages and weights: Lava's sigma-delta models and its Dense
    product compute in numpy int32, so sigma, act, residue and the synaptic sums wrap
    at 32 bits within a few steps; the simulator wraps them the same way, in the
    compiled loop and in the torch steps. wmax 30: netx scales the weights up by 4 with
    weight_exp -2, and Lava wraps W @ s before that shift."""
    rng = np.random.default_rng(21)
    layers = (Input(shape=(5,), neuron=SigmaDeltaNeuron(threshold=1)),
              Dense(weight=rng.integers(-wmax, wmax + 1, (6, 5)) * 2, bias=rng.integers(-2000, 2000, 6),
                    neuron=SigmaDeltaNeuron(threshold=3)),
              Dense(weight=rng.integers(-127, 128, (3, 6)) * 2,
                    neuron=SigmaDeltaNeuron(threshold=2, sigma_output=sigma_out)))
    path = tmp_path / "sdnn_wrap.net"
    write_netx(Network(layers=layers, input_shape=(5,)), path)
    x = rng.integers(-(1 << 18), 1 << 18, (5, 7))
    ours = _compare(path, x, steps=30, probe=False)  # against Lava
    assert np.abs(ours.records["sigma/1"]).max() > 2 ** 30  # near the int32 range
    from neurodeploy import fixedpoint as fx
    monkeypatch.setattr(fx, "compiled_sigma_delta_steps", lambda: None)
    torch_steps = simulate(read_netx(path), x[None], steps=30, record=True)
    assert np.array_equal(torch_steps.spikes, ours.spikes)
    for key in ours.records:
        assert np.array_equal(torch_steps.records[key], ours.records[key]), key


@pytest.mark.parametrize("case", ["sdnn conv, input layer skipped", "cuba, two blocks skipped, reset",
                                  "sdnn dense, graded net.inp"])
def test_skipped_layers_and_graded_network_input_match_lava(tmp_path, case):
    """netx's skip_layers (the next synapse gets the skipped blocks' output message
    bits and shape; reset offsets count the kept blocks) and input_message_bits (graded
    messages into net.inp of a file without an input layer), against Lava."""
    rng = np.random.default_rng(11)
    sd = lambda **k: SigmaDeltaNeuron(threshold=int(rng.integers(1, 20)), **k)  # noqa: E731
    kw = {}
    if case.startswith("sdnn conv"):
        layers = (Input(shape=(2, 6, 6), neuron=sd()),
                  Conv(weight=rng.integers(-60, 60, (3, 2, 3, 3)) * 2, neuron=sd(), shape=(3, 4, 4)),
                  Flatten(shape=(48,)), Dense(weight=rng.integers(-60, 60, (4, 48)) * 2, neuron=sd()))
        x, kw = rng.integers(-300, 300, (6, 6, 2, 8)), {"skip_layers": 1}
    elif case.startswith("cuba"):
        layers = (Input(shape=(7,), neuron=CubaNeuron(4096, 0, 0)),
                  Dense(weight=rng.integers(-60, 60, (9, 7)) * 2, neuron=CubaNeuron(1024, 256, 40)),
                  Dense(weight=rng.integers(-60, 60, (8, 9)) * 2, neuron=CubaNeuron(1500, 100, 30)),
                  Dense(weight=rng.integers(-60, 60, (3, 8)) * 2, neuron=CubaNeuron(3000, 400, 20)))
        x = (rng.random((9, 10)) < 0.5).astype(np.int32)
        kw = {"skip_layers": 2, "reset_interval": 5, "reset_offset": 1}
    else:
        layers = (Dense(weight=rng.integers(-60, 60, (6, 5)) * 2, neuron=sd()),
                  Dense(weight=rng.integers(-60, 60, (3, 6)) * 2, neuron=sd(sigma_output=True)))
        x, kw = rng.integers(-300, 300, (5, 8)), {"input_message_bits": 16}
    shape = layers[0].shape if isinstance(layers[0], Input) else (layers[0].weight.shape[1],)
    path = write_netx(Network(layers=layers, input_shape=shape), tmp_path / "n.net")
    ours = _compare(path, x, steps=12, **kw)
    assert np.count_nonzero(ours.spikes) > 0
    # the same run with the messages taken as spikes, or with the reset offsets counting
    # the skipped blocks too, differs
    net = read_netx(path, skip_layers=kw.get("skip_layers", 0))
    if case.startswith("cuba"):
        other = simulate(net, x, steps=12, reset_interval=5, reset_offset=1 + 2)
    else:
        other = simulate(dataclasses.replace(net, input_message_bits=0), x, steps=12)
    assert not np.array_equal(other.spikes, ours.spikes[0])


def _gts():
    found = lava_adapter.lava_dl_test_data()
    if found is None:
        pytest.skip("lava-dl's test data is not installed")
    return found


def test_lava_dl_tiny_conv_net_with_image_bias_matches_lava():
    g = _gts()
    bias = np.load(g / "gts/tinynet/input_bias.npy")
    ours = _compare(g / "tiny.net", np.zeros((16, 16, 3, 1), dtype=np.int32), steps=20, input_bias=bias)
    assert ours.spikes.sum() > 0


def test_lava_dl_mnist_net_matches_lava():
    g = _gts()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (784, 6))
    _compare(g / "mnist.net", x, steps=10, probe=False)


def test_validate_measures_agreement_with_lava(tmp_path):
    from neurodeploy.sim.commands import validate
    rng = np.random.default_rng(7)
    net = Network(layers=(Dense(weight=rng.integers(-60, 60, (8, 6)) * 2, neuron=CubaNeuron(1000, 300, 40)),
                          Dense(weight=rng.integers(-60, 60, (3, 8)) * 2, neuron=CubaNeuron(1000, 300, 40))),
                  input_shape=(6,))
    path = write_netx(net, tmp_path / "v.net")
    x = (rng.random((5, 6, 8)) < 0.5).astype(np.int8)
    for timeline in ("samples", "raw"):   # one Lava stream of two samples; two raw runs
        m = validate(path, x, np.zeros(5, dtype=int), lava_samples=2, timeline=timeline)
        assert m["agreement"]["sim_vs_lava"] == 1.0 and m["samples"]["lava"] == 2


def test_lava_leaves_the_loihi2_recording_where_the_simulator_does():
    """lava-dl's pilotnet_lif recording from Loihi 2 (image through the input
    layer's bias, reset every 16 steps) next to Lava's own fixed-point run: Lava
    gives the simulator's spikes at all 24 steps, and both leave the chip's at the
    same step, after each layer's second reset (conv-4 at step 21, fc-0 at 22; the
    chip then runs one step behind). So the slip is between Lava and the chip, not
    between the simulator and Lava. Spike sinks on two small layers only (u monitors
    on the conv layers cost Lava minutes)."""
    g = _gts() / "gts/pilotnet_lif"
    steps, bias = 24, np.load(g / "image.npy")
    x = np.zeros((200, 66, 3, 1), dtype=np.int32)
    lava = lava_adapter.run_netx(g / "network.net", x, steps=steps, reset_interval=16, input_bias=bias,
                                 probe={5, 6}, probe_vars=("s",))
    ours = simulate(read_netx(g / "network.net"), x[None], steps=steps, input_bias=bias,
                    reset_interval=16, record=True)
    # Lava layer index, our block index (a flatten block sits before fc-0), recording, first step off
    for j, i, name, first_off in ((5, 5, "conv-4", 21), (6, 7, "fc-0", 22)):
        lv = lava.probes[f"s/{j}"]
        assert np.array_equal(ours.records[f"s/{i}"][0], lv), name
        chip = np.load(g / f"{name}.npy").reshape(lv.shape[:-1] + (-1,))[..., :steps]
        assert np.array_equal(lv[..., :first_off], chip[..., :first_off]), name
        assert not np.array_equal(lv[..., first_off], chip[..., first_off]), name
        # one step behind: the chip's step t+1 is Lava's step t
        assert np.array_equal(lv[..., first_off:-1], chip[..., first_off + 1:]), name
