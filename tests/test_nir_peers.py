"""NIR graphs written by snnTorch's and Norse's own exporters, imported.

Each peer model is trained here on digits (fixed seed, 2 epochs, 64 hidden), exported
with the library's exporter and imported at the dt its exporter used. Criteria:

- the imported float model (train/imported.py, float32 as the peers compute) gives
  spikes identical to the source library's own forward, every layer, every step,
  every test sample (exact equality; observed 0 mismatches);
- the quantised network (training quantiser) run by the bit-accurate simulator
  classifies the test set as the source does on >= 98 % of samples (recurrent:
  >= 97 %, see below), and equals the float model of its own dequantised integers
  spike for spike, so every difference from the source is weight/threshold rounding;
- on Lava (`lava` marker) the quantised import agrees with the simulator on every sample.

Peer settings that match Loihi's (and NIR's) neuron: reset to zero at the spike step
(snnTorch: reset_mechanism="zero", reset_delay=False; Norse: its default), decays
that 12 bits hold exactly (beta = 0.875), and no bias into a decaying current.
"""
import dataclasses
import warnings

import numpy as np
import pytest
import torch
from conftest import requires_lava

snn = pytest.importorskip("snntorch", reason="the peers dependency group is not installed")
norse = pytest.importorskip("norse.torch", reason="the peers dependency group is not installed")

from neurodeploy.data import DataSpec  # noqa: E402
from neurodeploy.data.digits import load_splits  # noqa: E402
from neurodeploy.export.nir import nir_to_float, nir_to_network  # noqa: E402
from neurodeploy.sim.samples import simulated_outputs  # noqa: E402
from neurodeploy.train.imported import FloatImportedNetwork  # noqa: E402

pytestmark = pytest.mark.slow

HIDDEN, EPOCHS, BETA = 64, 2, 0.875
SNNTORCH_DT = 1e-4  # snntorch.export_to_nir writes tau = dt / (1 - beta) with dt = 1e-4
# norse.to_nir (1.1) writes tau = dt / tau_inv with its dt = 1e-3 (norse/norse#411),
# i.e. dt * tau in seconds: read at dt' = dt**2, dt' / tau is Norse's decay dt * tau_inv
NORSE_DT = 1e-3 ** 2


def load_digits():
    """(train spikes, train labels, test spikes, test labels); spikes (N, 20, 64)."""
    train, test = load_splits(DataSpec(name="digits", steps=20, seed=0))
    return (torch.from_numpy(train.encode(np.arange(len(train)))), torch.from_numpy(train.labels),
            torch.from_numpy(test.encode(np.arange(len(test)))), test.labels)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _full(n, v):
    return torch.full((n,), float(v))


def _snntorch_feedforward():
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    return torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), snn.Leaky(beta=_full(HIDDEN, BETA), threshold=_full(HIDDEN, 1), **kw),
        torch.nn.Linear(HIDDEN, 10), snn.Leaky(beta=_full(10, BETA), threshold=_full(10, 1), **kw))


def _snntorch_recurrent():
    """RLeaky (recurrent LIF, a NIR LIF with a Linear loop) into Synaptic (CubaLIF).
    No biases: with one, the recurrent layer spikes before a sample starts, and the
    per-sample reset layout of Lava and the simulator cannot clear the recurrent
    synapse's buffered spikes at the window start."""
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN, bias=False),
        snn.RLeaky(beta=_full(HIDDEN, BETA), threshold=_full(HIDDEN, 1), linear_features=HIDDEN, **kw),
        torch.nn.Linear(HIDDEN, 10, bias=False),
        snn.Synaptic(alpha=_full(10, 0.75), beta=_full(10, BETA), threshold=_full(10, 1), **kw))
    net[1].recurrent.bias.data.zero_()
    net[1].recurrent.bias.requires_grad_(False)
    return net


def _snntorch_forward(net, x):
    from snntorch import utils
    utils.reset(net)
    return [torch.stack(s, 1) for s in zip(*[_snntorch_step(net, x[:, t]) for t in range(x.shape[1])])]


def _snntorch_step(net, x):
    out = []
    for m in net:
        x = m(x)
        if isinstance(x, tuple):  # output=True layers return (spk, ...)
            x = x[0]
        if not isinstance(m, torch.nn.Linear):
            out.append(x)
    return out


def _norse_model():
    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(125.0))  # dt * tau_inv = 0.125
    net = norse.SequentialState(torch.nn.Linear(64, HIDDEN), norse.LIFBoxCell(p),
                                torch.nn.Linear(HIDDEN, 10), norse.LIFBoxCell(p))
    for m in net.modules():  # Norse's LIF scales its input by dt * tau_inv: start 8x larger
        if isinstance(m, torch.nn.Linear):
            m.weight.data *= 8
            m.bias.data *= 8
    return net


def _norse_forward(net, x):
    hidden, out, state = [], [], [None] * 4
    for t in range(x.shape[1]):
        h = x[:, t]
        layers = []
        for i, m in enumerate(net):
            if isinstance(m, torch.nn.Linear):
                h = m(h)
            else:
                h, state[i] = m(h, state[i])
                layers.append(h)
        hidden.append(layers[0])
        out.append(layers[1])
    return [torch.stack(hidden, 1), torch.stack(out, 1)]


def _train(net, forward, xtr, ytr, lr):
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    for epoch in range(EPOCHS):
        order = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(xtr), 64):
            idx = order[i:i + 64]
            counts = forward(net, xtr[idx])[-1].sum(1)
            loss = torch.nn.functional.cross_entropy(counts * 0.5, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def _export_snntorch(net):
    from snntorch.export_nir import export_to_nir
    return export_to_nir(net, torch.zeros(1, 64), ignore_dims=[0])


def _export_norse(net):
    return norse.to_nir(net, torch.zeros(1, 64))


PEERS = {
    # name: (build, forward, export, dt, learning rate, minimum agreement)
    "snntorch": (_snntorch_feedforward, _snntorch_forward, _export_snntorch, SNNTORCH_DT, 3e-3, 0.98),
    "snntorch_recurrent": (_snntorch_recurrent, _snntorch_forward, _export_snntorch, SNNTORCH_DT, 3e-3, 0.97),
    "norse": (_norse_model, _norse_forward, _export_norse, NORSE_DT, 2e-2, 0.98),
}


@pytest.fixture(scope="module")
def imported(digits):
    """name -> (source spikes per layer, NIR graph, quantised network); trained once."""
    xtr, ytr, xte, _ = digits
    out = {}
    for name, (build, forward, export, dt, lr, _) in PEERS.items():
        torch.manual_seed(0)
        net = _train(build(), forward, xtr, ytr, lr)
        with torch.no_grad():
            source = [s.numpy() for s in forward(net, xte)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = export(net)
        out[name] = (source, graph, nir_to_network(graph, dt, name=name))
    return out


@pytest.mark.parametrize("name", list(PEERS))
def test_imported_float_model_reproduces_the_source_forward_exactly(digits, imported, name):
    source, graph, _ = imported[name]
    dt = PEERS[name][3]
    ours = FloatImportedNetwork(nir_to_float(graph, dt), dtype=torch.float32)(digits[2])
    assert len(ours) == len(source)
    for layer, (a, b) in enumerate(zip(ours, source)):
        assert b.sum() > 0, f"layer {layer} of the source never spikes: nothing is compared"
        np.testing.assert_array_equal(a.numpy(), b, err_msg=f"layer {layer}")


def _predictions(counts):
    return counts.argmax(1)  # ties -> lowest index, as the pipeline's predictions()


@pytest.mark.parametrize("name", list(PEERS))
def test_quantised_import_classifies_as_the_source(digits, imported, name):
    _, _, xte, labels = digits
    source, graph, network = imported[name]
    samples = xte.numpy().transpose(0, 2, 1)  # (N, 64, T): the Lava port's order
    sim = simulated_outputs(network, samples)
    agreement = float((_predictions(sim.sum(-1)) == _predictions(source[-1].sum(1))).mean())
    source_acc = float((_predictions(source[-1].sum(1)) == labels).mean())
    assert source_acc > 0.6, f"{name}: the source model did not train ({source_acc:.3f})"
    assert agreement >= PEERS[name][5], f"{name}: {agreement:.3f}"
    # every difference from the source is rounding: the simulator equals the float
    # model of the network's own (dequantised) integers
    fnet = nir_to_float(graph, PEERS[name][3])
    layers, blocks = [], iter(network.layers)
    for layer, e in zip(fnet.layers, network.metadata["weight_exponents"]):
        b = next(blocks)
        s = 2.0 ** -e
        layers.append(dataclasses.replace(
            layer, weight=b.weight * s, threshold=b.neuron.threshold * s,
            current_decay=b.neuron.current_decay / 4096, voltage_decay=b.neuron.voltage_decay / 4096,
            weight_rec=None if b.weight_rec is None else b.weight_rec * s,
            bias=None if b.bias is None else b.bias * s))
    dq = FloatImportedNetwork(dataclasses.replace(fnet, layers=tuple(layers)), dtype=torch.float64)(xte)[-1]
    same = float((dq.numpy().transpose(0, 2, 1) == sim).mean())
    assert same >= 0.9995, f"{name}: simulator vs dequantised float model: {same}"


@requires_lava
@pytest.mark.lava
def test_quantised_snntorch_import_runs_on_lava_as_simulated(digits, imported, tmp_path):
    from neurodeploy.export.netx import write_netx
    from neurodeploy.sim.samples import lava_outputs

    _, _, xte, _ = digits
    network = imported["snntorch"][2]
    path = write_netx(network, tmp_path / "imported.net")
    samples = xte.numpy()[:24].transpose(0, 2, 1)
    lava = lava_outputs(path, network, samples)
    sim = simulated_outputs(network, samples)
    assert lava.sum() > 0
    np.testing.assert_array_equal(lava, sim)


def test_snntorch_runs_an_exported_network_as_its_float_image():
    """The way out: snnTorch's own importer reads a graph written by network_to_nir
    (CubaLIF and LIF layers, a bias) and its forward gives the spikes of the network's
    float image (the imported float model of the same graph)."""
    from snntorch import utils
    from snntorch.import_nir import import_from_nir

    from neurodeploy.export.nir import network_to_nir
    from neurodeploy.network import CubaNeuron, Dense, Network

    rng = np.random.default_rng(0)
    net = Network(layers=(
        Dense(weight=2 * rng.integers(-127, 128, (16, 8)), neuron=CubaNeuron(1024, 512, 300)),
        Dense(weight=2 * rng.integers(-127, 128, (5, 16)), neuron=CubaNeuron(4096, 512, 300),
              bias=rng.integers(-40, 40, 5)),
    ), input_shape=(8,))
    graph = network_to_nir(net, dt=SNNTORCH_DT)
    x = torch.from_numpy((rng.random((4, 30, 8)) < 0.5).astype(np.float32))
    ours = FloatImportedNetwork(nir_to_float(graph, SNNTORCH_DT))(x)[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = import_from_nir(graph)
    utils.reset(module)
    with torch.no_grad():
        theirs = torch.stack([module(x[:, t])[0] for t in range(x.shape[1])], 1)
    assert ours.sum() > 0
    assert torch.equal(theirs, ours)


def test_norse_lifcell_imports_with_jump_current_input():
    """Norse's LIFCell adds its input to the current as a jump (i += x) and exports a
    CubaLIF with w_in = 1: read with current_input="jump" it reproduces Norse's forward;
    the Euler reading scales the input current by dt/tau_syn and does not."""
    torch.manual_seed(0)
    net = norse.SequentialState(torch.nn.Linear(16, 12, bias=False), norse.LIFCell(),
                                torch.nn.Linear(12, 6, bias=False), norse.LIFCell())  # no bias into a current
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight.data *= 6
    x = (torch.rand(8, 40, 16) < 0.3).float()
    with torch.no_grad():
        source = _norse_forward(net, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse.to_nir(net, torch.zeros(1, 16))
    jump = FloatImportedNetwork(nir_to_float(graph, NORSE_DT, current_input="jump"))(x)
    for layer, (a, b) in enumerate(zip(jump, source)):
        assert b.sum() > 0, f"layer {layer} never spikes"
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=f"layer {layer}")
    euler = FloatImportedNetwork(nir_to_float(graph, NORSE_DT))(x)
    assert not torch.equal(euler[0], source[0])
