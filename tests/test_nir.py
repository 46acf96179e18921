"""NIR in and out: netx -> NIR -> netx keeps every integer field; the float mapping
(tau <-> decays at an explicit dt, gains folded into weights) is exact; bad graphs
are one-line errors; `neurodeploy convert` on the pipeline's dense network."""
import h5py
import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from neurodeploy.errors import InputError
from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.export.nir import (
    META_EXPONENT,
    network_to_nir,
    nir_to_float,
    nir_to_network,
    read_nir,
    write_nir,
)
from neurodeploy.fixedpoint import effective_weights
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Input, Network

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- hypothesis strategies over integer networks ---------------------------------
@st.composite
def neurons(draw, bias=False):
    return CubaNeuron(current_decay=draw(st.sampled_from([1, 2, 100, 1024, 4095, 4096])
                                         | st.integers(1, 4096)),
                      voltage_decay=draw(st.sampled_from([0, 1, 123, 4095]) | st.integers(0, 4095)),
                      threshold=draw(st.sampled_from([0, 1, 2, 77, (1 << 17) - 1]) | st.integers(0, (1 << 17) - 1)),
                      refractory_delay=draw(st.integers(0, 5)),
                      graded_spike=draw(st.booleans()))


def weights(draw, shape):
    """8-bit Loihi weights: mixed-sign even values in [-256, 254], or one sign in 0..255."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    sign = draw(st.sampled_from(["mixed", "excitatory", "inhibitory", "extreme"]))
    if sign == "mixed":
        return 2 * rng.integers(-128, 128, shape)
    if sign == "excitatory":
        return rng.integers(0, 256, shape)
    if sign == "inhibitory":
        return -rng.integers(0, 256, shape)
    w = 2 * rng.integers(-128, 128, shape)
    w.flat[0], w.flat[-1] = -256, 254
    return w


def bias_for(draw, neuron, n):
    """A bias NIR can express: any bias when the current does not decay across steps
    (iDecay = 4096) or the voltage leaks (vDecay > 0)."""
    if not draw(st.booleans()) or (neuron.current_decay < 4096 and neuron.voltage_decay == 0):
        return None
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    b = rng.integers(-(1 << 12), 1 << 12, n)
    b[0] = draw(st.sampled_from([-(1 << 12), (1 << 12) - 1, 0, 1]))
    return b


@st.composite
def dense_networks(draw):
    sizes = draw(st.lists(st.integers(1, 12), min_size=2, max_size=4))
    layers = []
    if draw(st.booleans()):
        nrn = neurons()
        n0 = draw(nrn)
        b0 = bias_for(draw, n0, sizes[0]) if n0.voltage_decay > 0 else None  # an input bias: v_leak
        layers.append(Input(shape=(sizes[0],), neuron=n0, bias=b0, weight=draw(st.sampled_from([64.0, 1.0]))))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        n = draw(neurons())
        rec = weights(draw, (b, b)) if draw(st.booleans()) else None
        w = weights(draw, (b, a))
        if rec is not None:  # dense_rec: one sign mode over both matrices (the writer's check)
            both = weights(draw, (b, a + b))
            w, rec = both[:, :a], both[:, a:]
        assume(np.array_equal(effective_weights(w), w))  # each matrix an 8-bit Loihi synapse
        layers.append(Dense(weight=w, neuron=n, bias=bias_for(draw, n, b), weight_rec=rec))
    return Network(layers=tuple(layers), input_shape=(sizes[0],), name="dense")


@st.composite
def conv_networks(draw):
    c = draw(st.integers(1, 3))
    h, w = draw(st.integers(3, 7)), draw(st.integers(3, 7))
    k = draw(st.sampled_from([1, 3]))
    stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 1))
    groups = draw(st.sampled_from([1, c]))
    out_c = groups * draw(st.integers(1, 3))
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    layers = []
    if draw(st.booleans()):
        layers.append(Input(shape=(c, h, w), neuron=draw(neurons())))
    n = draw(neurons())
    bias = None
    if draw(st.booleans()) and n.current_decay == 4096:  # a per-channel bias, as BN folding gives
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        bias = rng.integers(-(1 << 12), 1 << 12, out_c)  # per channel, as netx stores it
    wc = weights(draw, (out_c, c // groups, k, k))
    assume(np.array_equal(effective_weights(wc), wc))
    layers.append(Conv(weight=wc, neuron=n, shape=(out_c, oh, ow),
                       stride=(stride, stride), padding=(pad, pad), groups=groups, bias=bias))
    layers.append(Flatten(shape=(out_c, oh, ow)))
    n_out = draw(st.integers(1, 6))
    n2 = draw(neurons())
    w2 = weights(draw, (n_out, out_c * oh * ow))
    assume(np.array_equal(effective_weights(w2), w2))
    layers.append(Dense(weight=w2, neuron=n2,
                        bias=bias_for(draw, n2, n_out)))
    return Network(layers=tuple(layers), input_shape=(c, h, w), name="conv")


def assert_same_integers(a: Network, b: Network):
    assert a.input_shape == b.input_shape
    assert len(a.layers) == len(b.layers), ([type(x).__name__ for x in a.layers],
                                            [type(x).__name__ for x in b.layers])
    for i, (x, y) in enumerate(zip(a.layers, b.layers)):
        assert type(x) is type(y), i
        for name in ("shape", "neuron", "stride", "padding", "dilation", "groups", "weight_exp"):
            assert getattr(x, name, None) == getattr(y, name, None), (i, name)
        if isinstance(x, Input):
            assert x.weight == y.weight, i
        for name in ("bias",) if isinstance(x, Input) else ("weight", "bias", "weight_rec", "delay"):
            u, v = getattr(x, name, None), getattr(y, name, None)
            assert (u is None) == (v is None), (i, name)
            if u is not None:
                assert u.dtype.kind == v.dtype.kind == "i" and np.array_equal(u, v), (i, name)


def _netx_nir_netx(tmp_path, net, dt):
    write_netx(net, tmp_path / "a.net")
    a = read_netx(tmp_path / "a.net", input_shape=net.input_shape)
    write_nir(a, tmp_path / "a.nir", dt=dt)
    b = read_nir(tmp_path / "a.nir", dt=dt)
    write_netx(b, tmp_path / "b.net")
    return a, read_netx(tmp_path / "b.net", input_shape=net.input_shape)


@SETTINGS
@given(net=dense_networks(), dt=st.sampled_from([1.0, 1e-3, 1e-4, 0.37]))
def test_netx_nir_netx_keeps_every_integer_field_of_dense_and_recurrent_networks(tmp_path, net, dt):
    a, b = _netx_nir_netx(tmp_path, net, dt)
    assert_same_integers(a, b)


@SETTINGS
@given(net=conv_networks(), dt=st.sampled_from([1.0, 1e-3]))
def test_netx_nir_netx_keeps_every_integer_field_of_conv_networks(tmp_path, net, dt):
    a, b = _netx_nir_netx(tmp_path, net, dt)
    assert_same_integers(a, b)


def _strip_metadata(graph):
    for node in graph.nodes.values():
        node.metadata = {}
    graph.metadata = {}
    return graph


def _full_range_net(rng, recurrent=False):
    """A network as the training quantiser leaves it: each layer's largest weight
    uses the 8-bit range, thresholds within 17 bits."""
    w1 = 2 * rng.integers(-127, 128, (12, 10))
    w1[0, 0] = 254
    rec = None
    if recurrent:
        rec = 2 * rng.integers(-60, 60, (12, 12))
    w2 = 2 * rng.integers(-127, 128, (4, 12))
    w2[1, 1] = -254
    return Network(layers=(
        Dense(weight=w1, neuron=CubaNeuron(1024, 123, 300), bias=rng.integers(-99, 99, 12), weight_rec=rec),
        Dense(weight=w2, neuron=CubaNeuron(4096, 410, 700), bias=rng.integers(-99, 99, 4)),
    ), input_shape=(10,))


@pytest.mark.parametrize("recurrent", [False, True])
def test_float_mapping_alone_recovers_a_full_range_network_without_metadata(recurrent):
    """Without the writer's metadata, the tau/gain mapping and the training quantiser's
    exponent rule give back the same integers for a network that uses the 8-bit range."""
    net = _full_range_net(np.random.default_rng(1), recurrent)
    graph = _strip_metadata(network_to_nir(net, dt=1e-3))
    assert_same_integers(net, nir_to_network(graph, dt=1e-3))


def test_time_constants_are_4096_dt_over_the_decays():
    net = _full_range_net(np.random.default_rng(2))
    g = network_to_nir(net, dt=1e-3)
    cuba, lif = g.nodes["0.neuron"], g.nodes["1.neuron"]
    assert isinstance(cuba, nir.CubaLIF) and isinstance(lif, nir.LIF)  # iDecay 4096: no current
    np.testing.assert_allclose(cuba.tau_syn, 4096 * 1e-3 / 1024)
    np.testing.assert_allclose(cuba.tau_mem, 4096 * 1e-3 / 123)
    np.testing.assert_allclose(lif.tau, 4096 * 1e-3 / 410)
    # snnTorch's convention: unit Euler gains
    np.testing.assert_allclose(cuba.w_in * 1e-3 / cuba.tau_syn, 1.0)
    np.testing.assert_allclose(cuba.r * 1e-3 / cuba.tau_mem, 1.0)
    # weights and threshold divided by one power of two per layer (threshold in [1, 2))
    e = int(cuba.metadata[META_EXPONENT])
    np.testing.assert_array_equal(g.nodes["0.weight"].weight * 2.0 ** e, net.layers[0].weight)
    assert 1.0 <= cuba.v_threshold[0] < 2.0
    # a decay read with another dt scales with it: twice the dt, twice the decay
    assert nir_to_network(g, dt=2e-3).layers[0].neuron.voltage_decay == 2 * 123


def test_float_network_of_an_exported_graph_runs_the_networks_float_image():
    """The float model of an exported graph, run in float64, equals the integer
    network's float image (weights/thresholds/biases at 2**-e) exactly on spikes
    for a network whose decays keep values on the float grid."""
    import torch

    from neurodeploy.train.imported import FloatImportedNetwork
    rng = np.random.default_rng(3)
    net = Network(layers=(
        Dense(weight=2 * rng.integers(-127, 128, (16, 8)), neuron=CubaNeuron(4096, 0, 600)),
        Dense(weight=2 * rng.integers(-127, 128, (5, 16)), neuron=CubaNeuron(4096, 0, 300)),
    ), input_shape=(8,))
    x = (rng.random((4, 30, 8)) < 0.4).astype(np.float32)
    model = FloatImportedNetwork(nir_to_float(network_to_nir(net, dt=1.0), dt=1.0), dtype=torch.float64)
    ours = model(torch.from_numpy(x))[-1].numpy()
    # integer reference: no decay, so trunc0 is exact and v = sum of W s (<< 6)
    s = x
    for layer in net.layers:
        v = np.zeros((x.shape[0], layer.num_neurons))
        out = []
        for t in range(x.shape[1]):
            v = v + s[:, t] @ layer.weight.T
            spk = v > layer.neuron.threshold
            v[spk] = 0
            out.append(spk)
        s = np.stack(out, 1).astype(np.float32)
    np.testing.assert_array_equal(ours, s)


def _graph(**neuron):
    p = dict(tau_syn=np.full(3, 2e-3), tau_mem=np.full(3, 4e-3), r=np.full(3, 4.0), v_leak=np.zeros(3),
             v_threshold=np.ones(3), w_in=np.full(3, 2.0))
    p.update(neuron)
    return nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                               "w": nir.Linear(weight=np.ones((3, 2)) * 0.5),
                               "n": nir.CubaLIF(**p),
                               "output": nir.Output(output_type={"output": np.array([3])})},
                        edges=[("input", "w"), ("w", "n"), ("n", "output")])


@pytest.mark.parametrize("change, message", [
    (dict(v_reset=np.full(3, 0.5)), "v_reset must be 0"),
    (dict(tau_syn=np.full(3, 1e-4)), "shorter than dt"),
    (dict(v_threshold=np.full(3, -1.0)), "v_threshold must be >= 0"),
])
def test_graphs_loihi_cannot_run_are_one_line_input_errors(change, message):
    with pytest.raises(InputError, match=message) as e:
        nir_to_network(_graph(**change), dt=1e-3)
    assert "\n" not in str(e.value)


def test_unsupported_nodes_and_branches_name_the_node():
    g = _graph()
    g.nodes["w"] = nir.Scale(scale=np.ones(2))
    with pytest.raises(InputError, match="node 'w' of type Scale is not supported"):
        nir_to_network(g, dt=1e-3)
    g = _graph()
    g.edges.append(("input", "output"))
    with pytest.raises(InputError, match="feeds 2 nodes"):
        nir_to_network(g, dt=1e-3)


def test_per_neuron_thresholds_and_decays_stay_per_neuron_and_gains_fold_into_the_weights():
    """Different thresholds and time constants per neuron are netx's per-neuron fields
    (one per neuron of a dense layer); gains w_in dt/tau_syn and r dt/tau_mem multiply
    each neuron's weights."""
    g = _graph(v_threshold=np.array([1.0, 2.0, 4.0]), w_in=np.full(3, 3.0),
               tau_mem=np.array([4e-3, 4e-3, 8e-3]), r=np.array([4.0, 4.0, 8.0]))
    f = nir_to_float(g, dt=1e-3)
    layer = f.layers[0]
    np.testing.assert_array_equal(layer.threshold, [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(layer.voltage_decay, [0.25, 0.25, 0.125])
    assert layer.current_decay == 0.5
    gain = 3.0 * 0.5 * 4.0 * 0.25  # w_in dt/tau_syn * r dt/tau_mem (r dt/tau_mem is 1 for all three)
    np.testing.assert_allclose(layer.weight[:, 0], 0.5 * gain)
    neuron = nir_to_network(g, dt=1e-3).layers[0].neuron
    assert neuron.voltage_decay == (1024, 1024, 512)
    t = np.array(neuron.threshold)
    np.testing.assert_array_equal(t, t[0] * np.array([1, 2, 4]))


def test_conv_fields_that_differ_within_a_channel_are_refused():
    """A conv layer holds one decay and threshold per channel: values that differ between
    positions of one channel are one line naming the node."""
    n = 2 * 3 * 3
    tau = np.full(n, 4e-3)
    tau[1] = 5e-3  # channel 0, second position
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1, 3, 3])}),
        "c": nir.Conv2d(input_shape=(3, 3), weight=np.ones((2, 1, 1, 1)), stride=1, padding=0,
                        dilation=1, groups=1, bias=np.zeros(2)),
        "n": nir.LIF(tau=tau.reshape(2, 3, 3), r=np.full((2, 3, 3), 4.0), v_leak=np.zeros((2, 3, 3)),
                     v_threshold=np.ones((2, 3, 3)), v_reset=np.zeros((2, 3, 3))),
        "output": nir.Output(output_type={"output": np.array([2, 3, 3])})},
        edges=[("input", "c"), ("c", "n"), ("n", "output")])
    with pytest.raises(InputError, match="node 'n'.*'tau' differs between neurons of one channel") as e:
        nir_to_network(g, dt=1e-3)
    assert "\n" not in str(e.value)


def test_snntorch_style_nested_recurrent_subgraph_reads_as_dense_rec():
    """snnTorch's RSynaptic before nirtorch flattens it: a NIRGraph node with
    input -> lif -> w_rec -> lif -> output."""
    n, dt = 4, 1e-4
    alpha, beta = 0.75, 0.875
    tau_syn, tau_mem = dt / (1 - alpha), dt / (1 - beta)
    rng = np.random.default_rng(0)
    w_rec = rng.normal(0, 0.3, (n, n))
    sub = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([n])}),
        "lif": nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.full(n, tau_mem / dt),
                           v_leak=np.zeros(n), v_threshold=np.ones(n), w_in=np.full(n, tau_syn / dt)),
        "w_rec": nir.Linear(weight=w_rec),
        "output": nir.Output(output_type={"output": np.array([n])})},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    w = rng.normal(0, 0.3, (n, 3))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                            "fc": nir.Linear(weight=w), "rsyn": sub,
                            "output": nir.Output(output_type={"output": np.array([n])})},
                     edges=[("input", "fc"), ("fc", "rsyn"), ("rsyn", "output")])
    net = nir_to_network(g, dt=dt)
    (layer,) = net.layers
    assert layer.weight_rec is not None and layer.weight_rec.shape == (n, n)
    assert layer.neuron.current_decay == 1024 and layer.neuron.voltage_decay == 512
    e = net.metadata["weight_exponents"][0]
    np.testing.assert_allclose(layer.weight_rec / 2.0 ** e, w_rec, atol=2.0 ** -e)


def test_convert_command_round_trips_the_pipeline_dense_network(tmp_path):
    """The dense digits network (64-128-10, the layout the pipeline writes) through
    `neurodeploy convert` both ways; bad input is one line with exit code 2."""
    rng = np.random.default_rng(4)
    w1 = 2 * rng.integers(-127, 128, (128, 64))
    w2 = 2 * rng.integers(-127, 128, (10, 128))
    net = Network(layers=(Dense(weight=w1, neuron=CubaNeuron(1024, 123, 411)),
                          Dense(weight=w2, neuron=CubaNeuron(1024, 123, 389))), input_shape=(64,))
    write_netx(net, tmp_path / "model.net")
    from click.testing import CliRunner

    from neurodeploy.cli import main

    def run(*args):
        r = CliRunner().invoke(main, ["convert", *args])
        return r.exit_code, r.output  # stdout and stderr together

    code, out = run(str(tmp_path / "model.net"), str(tmp_path / "model.nir"))
    assert code == 0, out
    code, out = run(str(tmp_path / "model.nir"), str(tmp_path / "imported.net"))
    assert code == 0, out
    assert_same_integers(read_netx(tmp_path / "model.net"), read_netx(tmp_path / "imported.net"))
    with h5py.File(tmp_path / "model.nir") as f:
        assert "node" in f and "version" in f  # nir's own layout
    (tmp_path / "junk.nir").write_text("not hdf5")
    code, out = run(str(tmp_path / "junk.nir"), str(tmp_path / "x.net"))
    assert code == 2 and out.count("\n") == 1 and "junk.nir" in out and "Traceback" not in out
    code, out = run(str(tmp_path / "model.net"), str(tmp_path / "x.onnx"))
    assert code == 2 and "unknown format" in out
    code, out = run(str(tmp_path / "model.nir"), str(tmp_path / "x.net"), "--dt", "-1")
    assert code == 2 and "dt must be" in out


def test_the_nir_module_imports_without_torch():
    """The NIR mapping needs numpy, h5py and nir only (torch arrives with the integer
    network description's quantisers, which are imported when a network is built)."""
    import subprocess
    import sys
    code = "import sys, neurodeploy.export.nir, neurodeploy.export.commands; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_the_pipelines_conv_network_with_folded_batch_norm_round_trips(tmp_path):
    """quantize_model's conv network (per-channel biases from batch norm, a flatten,
    dense layers) through write_nir/read_nir: the same integers, per-channel bias kept."""
    import torch

    from neurodeploy.export.quantize import quantize_model
    from neurodeploy.train.layers import SpikingNetwork
    from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
    torch.manual_seed(0)
    model = SpikingNetwork((1, 8, 8), [12], 10, CubaFloatParameters(current_decay=1.0), SurrogateParameters(),
                           conv=[dict(channels=4, kernel=3, padding=1), dict(channels=6, kernel=3, stride=2)],
                           batch_norm=True).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.2, 0.2)
    net = quantize_model(model, name="conv")
    assert net.layers[0].bias is not None and net.layers[0].bias.shape == (4,)
    write_nir(net, tmp_path / "model.nir")
    assert_same_integers(net, read_nir(tmp_path / "model.nir"))


def test_a_node_off_the_chain_is_named():
    g = _graph()
    g.nodes["extra"] = nir.Linear(weight=np.ones((3, 3)))
    with pytest.raises(InputError, match="node 'extra' is not on the chain"):
        nir_to_network(g, dt=1e-3)
