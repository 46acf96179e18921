"""The public API (`import neurodeploy as nd`): lazy imports, quantising any module of
neurodeploy layers, simulation in torch order against the model's own forward, NIR
forwarding, and the README's runnable example."""
import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import requires_lava
from torch import nn

import neurodeploy as nd
from neurodeploy.errors import InputError, MissingDependencyError

ROOT = Path(__file__).resolve().parent.parent
SURROGATE = nd.SurrogateParameters(scale=3.0, band=3.0)
#: float arithmetic equals the chip's integers: u = input (current_decay 1), no leak, a
#: threshold that is a whole number at any exponent >= 2
EXACT_NEURON = nd.CubaFloatParameters(current_decay=1.0, voltage_decay=0.0, threshold=0.25)


def _on_grid(model):
    """Round every layer's weights to the 8-bit grid at the exponent nd.quantize picks."""
    with torch.no_grad():
        for layer in [m for m in model.modules() if isinstance(m, (nd.CubaDense, nd.CubaConv))]:
            params = [layer.weight] + ([layer.weight_rec] if getattr(layer, "weight_rec", None) is not None else [])
            top = max(float(p.abs().max()) for p in params)
            e = int(np.floor(np.log2(254 / top)))
            for p in params:
                p.copy_((2 * torch.round(p * 2.0 ** e / 2)).clamp(-256, 254) / 2.0 ** e)
    return model


class ConvNet(nn.Module):
    """A user's own module: conv -> dense, flattened in torch's (C, H, W) order."""

    def __init__(self):
        super().__init__()
        self.conv = nd.CubaConv((2, 6, 5), channels=3, kernel=3, neuron=EXACT_NEURON, surrogate=SURROGATE)
        self.fc = nd.CubaDense(3 * 4 * 3, 7, EXACT_NEURON, SURROGATE, recurrent=True)
        self.out = nd.CubaDense(7, 4, EXACT_NEURON, SURROGATE)

    def forward(self, x):
        s = self.conv(x)
        return self.out(self.fc(s.flatten(2)))


def test_import_neurodeploy_loads_neither_torch_nor_lava():
    code = ("import sys, neurodeploy as nd\n"
            "fs = [nd.quantize, nd.write_netx, nd.read_netx, nd.simulate, nd.run_lava, nd.map_network,"
            " nd.write_nir, nd.read_nir]\n"
            "assert 'torch' not in sys.modules and 'lava' not in sys.modules, sorted(sys.modules)\n"
            "assert set(nd.__all__) >= {'quantize', 'simulate', 'run_lava', 'Network', 'CubaDense'}\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    with pytest.raises(AttributeError, match="no attribute 'quantise'"):
        nd.quantise


def test_quantize_takes_layers_in_registration_order_or_as_listed():
    torch.manual_seed(0)
    reference = nd.SpikingNetwork((12,), [9, 6], 3, nd.CubaFloatParameters(), SURROGATE, recurrent=True)

    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(reference.layers[:2])
            self.head = reference.layers[2]

    a, b = nd.quantize(reference), nd.quantize(Mine())
    assert [type(x).__name__ for x in b.layers] == ["Dense", "Dense", "Dense"]
    assert b.input_shape == (12,) and b.metadata["weight_exponents"] == a.metadata["weight_exponents"]
    for x, y in zip(a.layers, b.layers):
        np.testing.assert_array_equal(x.weight, y.weight)
        assert x.neuron == y.neuron
    np.testing.assert_array_equal(b.layers[0].weight_rec, a.layers[0].weight_rec)

    class Reversed(nn.Module):  # registered out of running order
        def __init__(self):
            super().__init__()
            self.head, self.first, self.second = reference.layers[2], reference.layers[0], reference.layers[1]

    with pytest.raises(ValueError, match=r"layer 1 \(CubaDense\) has 12 inputs, the previous layer gives 3"):
        nd.quantize(Reversed())
    m = Reversed()
    c = nd.quantize(m, layers=[m.first, m.second, m.head])
    for x, y in zip(a.layers, c.layers):
        np.testing.assert_array_equal(x.weight, y.weight)
    with pytest.raises(ValueError, match="no neurodeploy layers"):
        nd.quantize(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="entry 0 is a Linear"):
        nd.quantize(m, layers=[nn.Linear(3, 3)])


def test_simulate_of_a_users_conv_module_equals_its_forward_in_torch_order():
    torch.manual_seed(1)
    model = _on_grid(ConvNet())
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(10, 12, 2, 6, 5, generator=g) < 0.4).float()
    with torch.no_grad():
        own = model(x).numpy().astype(np.uint8)
    network = nd.quantize(model)
    assert [type(b).__name__ for b in network.layers] == ["Conv", "Flatten", "Dense", "Dense"]
    sim = nd.simulate(network, x)
    assert sim.shape == (10, 12, 4) and sim.dtype == np.uint8
    assert sim.sum() > 20
    np.testing.assert_array_equal(sim, own)
    # the layout matters: the same spikes with H and W swapped give other outputs
    swapped = x.transpose(3, 4).reshape(10, 12, 2, 6, 5)
    assert not np.array_equal(nd.simulate(network, swapped), own)
    with pytest.raises(InputError, match=r"expected samples of shape \(N, T, 2, 6, 5\)"):
        nd.simulate(network, x[:, :, 0])
    with pytest.raises(InputError, match="must be integers"):
        nd.simulate(network, x * 0.5)


def test_hardware_aware_model_and_simulate_agree_after_write_and_read(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nd.CubaDense(20, 16, nd.CubaFloatParameters(), SURROGATE, recurrent=True),
                          nd.CubaDense(16, 5, nd.CubaFloatParameters(), SURROGATE))
    nd.hardware_aware(model)
    x = (torch.rand(8, 15, 20, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    with torch.no_grad():
        own = model(x).numpy().astype(np.uint8)
    network = nd.read_netx(nd.write_netx(nd.quantize(model), tmp_path / "m.net"))
    sim = nd.simulate(network, x)
    assert sim.sum() > 10
    np.testing.assert_array_equal(sim, own)
    report = nd.map_network(network, "loihi2", inputs=x)
    assert report.total_cores == 2 and report.activity.samples == 8 and report.activity.steps == 15


def test_nir_functions_forward_to_the_nir_module(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("neurodeploy.export.nir")
    fake.write_nir = lambda network, path, dt, **kw: calls.append(("write", network, path, dt, kw))
    fake.read_nir = lambda path, dt, **kw: calls.append(("read", path, dt, kw)) or "network"
    monkeypatch.setitem(sys.modules, "neurodeploy.export.nir", fake)
    nd.write_nir("net", tmp_path / "a.nir", dt=1e-3)
    assert nd.read_nir(tmp_path / "a.nir", dt=2e-3, name="x") == "network"
    assert calls == [("write", "net", tmp_path / "a.nir", 1e-3, {}),
                     ("read", tmp_path / "a.nir", 2e-3, {"name": "x"})]


@pytest.mark.skipif(importlib.util.find_spec("neurodeploy.export.nir") is not None,
                    reason="neurodeploy.export.nir is installed")
def test_nir_functions_say_when_nir_support_is_missing(tmp_path):
    with pytest.raises(MissingDependencyError, match="neurodeploy.export.nir"):
        nd.write_nir(None, tmp_path / "a.nir", dt=1e-3)


@requires_lava
@pytest.mark.lava
@pytest.mark.slow
def test_readme_api_example_runs_spike_exact(tmp_path):
    """examples/api_example.py (the README's example): own module and loop, quantise,
    netx, simulation equal to the model's forward and to Lava, mapping."""
    spec = importlib.util.spec_from_file_location("api_example", ROOT / "examples" / "api_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(epochs=2, lava_samples=4, out=tmp_path, train_samples=300)
    assert (tmp_path / "digit_net.net").exists()
    assert result["sim_equals_model"] and result["lava_equals_sim"] is True
    assert result["sim_accuracy"] > 0.5 and result["cores"] == 2
