"""Residual graphs through NIR: netx -> NIR -> netx keeps every integer field and
shortcut of random residual networks (hypothesis) and their simulated spikes; the
float model of an exported residual graph gives the bit-accurate simulator's spikes;
graphs written by hand (direct identity edges, projections, several edges into one
neuron) import; structures netx cannot hold are one line naming the node."""
from dataclasses import replace

import nir
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from residual_nets import random_conv_resnet, random_dense_resnet
from test_nir import assert_same_integers

from neurodeploy.errors import InputError
from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.export.nir import network_to_nir, nir_to_float, nir_to_network, read_nir, write_nir
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Network
from neurodeploy.sim.samples import simulated_outputs
from neurodeploy.sim.simulator import simulate

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_same_shortcuts(a: Network, b: Network):
    assert len(a.shortcuts) == len(b.shortcuts)
    for x, y in zip(sorted(a.shortcuts, key=lambda s: (s.target, s.source)),
                    sorted(b.shortcuts, key=lambda s: (s.target, s.source))):
        assert (x.source, x.target, x.stride, x.padding, x.delay) == (y.source, y.target, y.stride, y.padding,
                                                                      y.delay)
        assert y.weight.dtype.kind == "i" and np.array_equal(x.weight, y.weight)


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), blocks=st.integers(1, 3), conv=st.booleans(), bias=st.booleans(),
       dt=st.sampled_from([1.0, 1e-3, 0.37]))
def test_netx_nir_netx_keeps_every_field_and_shortcut_of_residual_networks(tmp_path, seed, blocks, conv, bias,
                                                                          dt):
    net = random_conv_resnet(seed, blocks, bias, aligned=True) if conv else random_dense_resnet(seed, blocks)
    write_netx(net, tmp_path / "a.net")
    a = read_netx(tmp_path / "a.net")
    write_nir(a, tmp_path / "a.nir", dt=dt)
    write_netx(read_nir(tmp_path / "a.nir", dt=dt), tmp_path / "b.net")
    b = read_netx(tmp_path / "b.net")
    assert_same_integers(a, b)
    assert_same_shortcuts(a, b)
    rng = np.random.default_rng(seed)
    x = (rng.random((2, *a.input_shape_netx, 16)) < 0.4).astype(np.int8)
    sa, sb = simulate(a, x, record=True), simulate(b, x, record=True)
    spikes = sorted(k for k in sa.records if k.startswith("s/"))
    assert any(sa.records[k].any() for k in spikes)  # the comparison sees spikes
    for k in spikes:
        np.testing.assert_array_equal(sa.records[k], sb.records[k])


def _integer_exact(net: Network) -> Network:
    """The network with no leak and a current that does not persist: its float image
    (weights and thresholds at 2**-e) then runs without rounding."""
    return replace(net, layers=tuple(replace(b, neuron=CubaNeuron(4096, 0, b.neuron.threshold))
                                     if hasattr(b, "neuron") and b.neuron is not None else b
                                     for b in net.layers))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float_model_of_an_exported_residual_graph_gives_the_simulators_spikes(seed):
    """The float import path (nir_to_float, train.imported) against the bit-accurate
    simulator, sample by sample on Lava's timeline, shortcuts included."""
    import torch

    from neurodeploy.train.imported import FloatImportedNetwork
    net = _integer_exact(random_dense_resnet(seed, blocks=3))
    rng = np.random.default_rng(seed)
    x = (rng.random((6, 6, 20)) < 0.5).astype(np.int8)  # (samples, neurons, steps)
    ours = simulated_outputs(net, x)
    model = FloatImportedNetwork(nir_to_float(network_to_nir(net)), dtype=torch.float64)
    out = model(torch.from_numpy(np.moveaxis(x, -1, 1).astype(np.float64)))
    assert len(model.fnet.shortcuts) == len(net.shortcuts) == 4  # three blocks and one over all
    assert any(o.any() for o in out[:-1]) and ours.any()
    np.testing.assert_array_equal(np.moveaxis(out[-1].numpy(), 1, -1), ours)


def _lif(n, thr=1.0):
    return nir.LIF(tau=np.full(n, 1e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                   v_reset=np.zeros(n))


def _hand_graph(extra_nodes, extra_edges, n=4):
    """input -> fc0 -> n0 -> fc1 -> n1 -> fc2 -> n2 -> output, plus extra nodes/edges."""
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type={"input": np.array([3])}),
             "fc0": nir.Linear(weight=rng.normal(0, 1, (n, 3))), "n0": _lif(n),
             "fc1": nir.Linear(weight=rng.normal(0, 1, (n, n))), "n1": _lif(n),
             "fc2": nir.Linear(weight=rng.normal(0, 1, (n, n))), "n2": _lif(n),
             "output": nir.Output(output_type={"output": np.array([n])}), **extra_nodes}
    edges = [("input", "fc0"), ("fc0", "n0"), ("n0", "fc1"), ("fc1", "n1"), ("n1", "fc2"), ("fc2", "n2"),
             ("n2", "output"), *extra_edges]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_a_direct_edge_is_an_identity_shortcut_and_a_synapse_node_a_projection():
    """Several edges into one neuron node sum (NIR's rule): a direct edge n0 -> n2 is
    the identity, a Linear n0 -> p -> n2 a projection; both join n2's current with the
    chain's synapse, at one weight exponent, with the delay that aligns the paths."""
    proj = np.full((4, 4), 0.25)
    g = _hand_graph({"p": nir.Linear(weight=proj)}, [("n0", "n2"), ("n0", "p"), ("p", "n2")])
    net = nir_to_network(g, dt=1e-3)
    assert [type(b) for b in net.layers] == [Dense, Dense, Dense]
    e = net.metadata["weight_exponents"][2]
    by_weight = sorted(net.shortcuts, key=lambda s: s.weight[0, 0])
    assert [(s.source, s.target, s.delay) for s in by_weight] == [(0, 2, 1), (0, 2, 1)]
    np.testing.assert_array_equal(by_weight[0].weight, np.round(proj * 2.0 ** e))
    np.testing.assert_array_equal(by_weight[1].weight, np.eye(4) * 2 ** e)
    fnet = nir_to_float(g, dt=1e-3)
    assert len(fnet.shortcuts) == 2 and {sc.target for sc in fnet.shortcuts} == {2}


def test_conv_identity_and_projection_shortcuts_import():
    """A conv residual block written by hand: Conv2d chain, a 1x1 strided Conv2d
    projection into the block's second layer, a direct edge into the next block's."""
    rng = np.random.default_rng(1)

    def conv(cin, cout, k, stride, pad, size):
        return nir.Conv2d(input_shape=(size, size), weight=rng.normal(0, 1, (cout, cin, k, k)), stride=stride,
                          padding=pad, dilation=1, groups=1, bias=np.zeros(cout))

    def lif(shape):
        return nir.LIF(tau=np.full(shape, 1e-3), r=np.ones(shape), v_leak=np.zeros(shape),
                       v_threshold=np.ones(shape), v_reset=np.zeros(shape))

    nodes = {"input": nir.Input(input_type={"input": np.array([1, 6, 6])}),
             "c0": conv(1, 2, 3, 1, 1, 6), "n0": lif((2, 6, 6)),
             "c1": conv(2, 3, 3, 2, 1, 6), "n1": lif((3, 3, 3)),
             "c2": conv(3, 3, 3, 1, 1, 3), "n2": lif((3, 3, 3)), "proj": conv(2, 3, 1, 2, 0, 6),
             "c3": conv(3, 3, 3, 1, 1, 3), "n3": lif((3, 3, 3)),
             "c4": conv(3, 3, 3, 1, 1, 3), "n4": lif((3, 3, 3)),
             "flat": nir.Flatten(input_type={"input": np.array([3, 3, 3])}, start_dim=0, end_dim=-1),
             "fc": nir.Linear(weight=rng.normal(0, 1, (2, 27))), "out_n": _lif(2),
             "output": nir.Output(output_type={"output": np.array([2])})}
    chain = ["input", "c0", "n0", "c1", "n1", "c2", "n2", "c3", "n3", "c4", "n4", "flat", "fc", "out_n", "output"]
    edges = list(zip(chain[:-1], chain[1:])) + [("n0", "proj"), ("proj", "n2"), ("n2", "n4")]
    net = nir_to_network(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False), dt=1e-3)
    assert [type(b) for b in net.layers] == [Conv] * 5 + [Flatten, Dense]
    (p, i) = sorted(net.shortcuts, key=lambda s: s.target)
    assert (p.source, p.target, p.stride, p.weight.shape, p.delay) == (0, 2, (2, 2), (3, 2, 1, 1), 1)
    e = net.metadata["weight_exponents"][4]
    assert (i.source, i.target) == (2, 4)
    np.testing.assert_array_equal(i.weight, np.eye(3).reshape(3, 3, 1, 1) * 2 ** e)


@pytest.mark.parametrize("extra_nodes, extra_edges, message", [
    ({"s": nir.Linear(weight=np.ones((4, 3)))}, [("input", "s"), ("s", "n1")],
     "shortcut 's' starts at the network's Input"),
    ({"b": _lif(4), "w": nir.Linear(weight=np.ones((4, 4)))}, [("n0", "w"), ("w", "b"), ("b", "n2")],
     "node 'b' is not on the chain"),
    ({"s": nir.Linear(weight=np.ones((4, 4)))}, [("n0", "s"), ("s", "n1"), ("s", "n2")],
     "node 's' feeds 2 nodes"),
    ({"s": nir.Linear(weight=np.ones((3, 4)))}, [("n0", "s"), ("s", "n2")],
     "shortcut 's': gives shape"),
    ({}, [("n0", "output")], "node 'n0' feeds 2 nodes"),
])
def test_structures_netx_cannot_hold_are_one_line_errors_naming_the_node(extra_nodes, extra_edges, message):
    with pytest.raises(InputError, match=message) as e:
        nir_to_network(_hand_graph(extra_nodes, extra_edges), dt=1e-3)
    assert "\n" not in str(e.value)


def test_a_per_channel_conv_network_exports_and_reads_back(tmp_path):
    """Per-channel thresholds and decays on a conv layer (as hardware-aware learning of
    thresholds leaves them) are NIR arrays shaped like the node, read back per channel."""
    rng = np.random.default_rng(5)
    neuron = CubaNeuron((4096, 1000, 4096), (10, 20, 30), (100, 200, 300))
    net = Network(layers=(Conv(2 * rng.integers(-60, 60, (3, 1, 3, 3)), neuron, (3, 4, 4), padding=(1, 1)),
                          Flatten((3, 4, 4)), Dense(2 * rng.integers(-60, 60, (2, 48)), CubaNeuron(4096, 0, 90))),
                  input_shape=(1, 4, 4))
    graph = network_to_nir(net, dt=1e-3)
    thr = graph.nodes["0.neuron"].v_threshold
    assert thr.shape == (3, 4, 4) and np.all(thr == thr[:, :1, :1])
    write_nir(net, tmp_path / "c.nir", dt=1e-3)
    back = read_nir(tmp_path / "c.nir", dt=1e-3)
    assert back.layers[0].neuron == neuron
    assert_same_integers(net, back)


def test_convert_simulate_and_validate_on_a_residual_nir(tmp_path):
    """`neurodeploy convert` both ways on a residual network, then `simulate` and
    `validate` (simulator only) on the converted file; a refused graph exits 2."""
    from click.testing import CliRunner

    from neurodeploy.cli import main
    net = random_conv_resnet(3, blocks=2, aligned=True)
    write_netx(net, tmp_path / "r.net")

    def run(*args):
        r = CliRunner().invoke(main, list(args))
        return r.exit_code, r.output

    assert run("convert", str(tmp_path / "r.net"), str(tmp_path / "r.nir"))[0] == 0
    code, out = run("convert", str(tmp_path / "r.nir"), str(tmp_path / "back.net"))
    assert code == 0, out
    back = read_netx(tmp_path / "back.net")
    assert_same_integers(read_netx(tmp_path / "r.net"), back)
    assert_same_shortcuts(read_netx(tmp_path / "r.net"), back)
    rng = np.random.default_rng(0)
    x = (rng.random((3, *net.input_shape_netx, 12)) < 0.4).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.zeros(3, np.int64))
    code, out = run("simulate", str(tmp_path / "back.net"), "--input", str(tmp_path / "x.npy"),
                    "--output", str(tmp_path / "s.npz"))
    assert code == 0, out
    np.testing.assert_array_equal(np.load(tmp_path / "s.npz")["spikes"], simulate(net, x).spikes)
    code, out = run("validate", str(tmp_path / "back.net"), "--input", str(tmp_path / "x.npy"),
                    "--labels", str(tmp_path / "y.npy"), "--lava-samples", "0")
    assert code == 0, out
    g = network_to_nir(net)
    g.edges.append(("input", "1.neuron"))
    nir.write(tmp_path / "bad.nir", g)
    code, out = run("convert", str(tmp_path / "bad.nir"), str(tmp_path / "bad.net"))
    assert code == 2 and out.count("\n") == 1 and "starts at the network's Input" in out, out


def test_snntorch_runs_an_exported_residual_graph_as_its_float_model():
    """An outside reader of the graphs the writer gives: snnTorch's importer (nirtorch
    sums the edges into a node) runs an exported residual network (CubaLIF and LIF
    layers, identity, projection and long shortcuts) with the spikes of our float model."""
    snn_import = pytest.importorskip("snntorch.import_nir", reason="the peers dependency group is not installed")
    import warnings

    import torch
    from snntorch import utils

    from neurodeploy.train.imported import FloatImportedNetwork
    dt = 1e-4  # snnTorch's exporter's dt; any dt gives the same float model
    for seed in range(2):
        net = random_dense_resnet(seed, blocks=2)
        net = replace(net, layers=tuple(replace(b, neuron=CubaNeuron(4096 if i % 2 else 1024, 512,
                                                                     b.neuron.threshold))
                                        for i, b in enumerate(net.layers)))
        graph = network_to_nir(net, dt=dt)
        x = torch.from_numpy((np.random.default_rng(seed).random((4, 30, 6)) < 0.5).astype(np.float32))
        ours = FloatImportedNetwork(nir_to_float(graph, dt))(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = snn_import.import_from_nir(graph)
        utils.reset(module)
        with torch.no_grad():
            theirs = torch.stack([module(x[:, t])[0] for t in range(x.shape[1])], 1)
        assert all(o.sum() > 0 for o in ours)
        assert torch.equal(theirs, ours[-1])


@pytest.mark.slow
@pytest.mark.lava
def test_a_hand_written_residual_graph_runs_on_lava_as_simulated(tmp_path):
    """A residual graph from outside neurodeploy (direct identity edge and a Linear
    projection into one neuron node), converted to .net: Lava (netx's chain plus a
    synapse per shortcut) gives the simulator's output spikes on every sample."""
    lava_adapter = pytest.importorskip("neurodeploy.lava_adapter")
    if not lava_adapter.lava_available():
        pytest.skip("Lava is not importable here")
    from neurodeploy.sim.samples import lava_outputs
    g = _hand_graph({"p": nir.Linear(weight=np.full((4, 4), 0.25))}, [("n0", "n2"), ("n0", "p"), ("p", "n2")])
    for node in ("n0", "n1", "n2"):
        g.nodes[node].v_threshold = np.full(4, 0.5)
    path = write_netx(nir_to_network(g, dt=1e-3), tmp_path / "hand.net")
    net = read_netx(path)
    assert len(net.shortcuts) == 2
    samples = (np.random.default_rng(2).random((4, 3, 12)) < 0.6).astype(np.int8)
    ours = simulated_outputs(net, samples)
    assert ours.any()
    np.testing.assert_array_equal(ours, lava_outputs(path, net, samples))
