"""The integer network description without torch: imports, input shape and
layout in every file, one port-order conversion, chip limits in one place."""
from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from neurodeploy import fixedpoint as fx
from neurodeploy import layout
from neurodeploy.errors import InputError
from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Network


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", ["neurodeploy.export.netx", "neurodeploy.network", "neurodeploy.fixedpoint",
                                    "neurodeploy.layout", "neurodeploy.hardware.mapper", "neurodeploy.cli"])
def test_reading_side_imports_without_torch(module):
    r = _run(f"import sys, {module}; assert 'torch' not in sys.modules, 'torch imported'")
    assert r.returncode == 0, r.stderr


def test_reading_a_net_file_does_not_import_torch(tmp_path):
    path = write_netx(_conv_net(), tmp_path / "c.net")
    r = _run("import sys\nfrom neurodeploy.export.netx import read_netx\n"
             f"net = read_netx({str(path)!r})\nassert net.input_shape == (2, 6, 6)\n"
             "assert 'torch' not in sys.modules, 'torch imported'")
    assert r.returncode == 0, r.stderr


def test_cli_help_imports_no_command_module():
    r = _run("import sys\nfrom click.testing import CliRunner\nfrom neurodeploy.cli import main\n"
             "res = CliRunner().invoke(main, ['--help'])\nassert res.exit_code == 0\n"
             "bad = [m for m in ('torch', 'numpy', 'h5py', 'neurodeploy.sim.commands') if m in sys.modules]\n"
             "assert not bad, bad\nprint(res.output)")
    assert r.returncode == 0, r.stderr
    for name in ("simulate", "validate", "map", "deploy", "bundle", "pipeline"):
        assert name in r.stdout


def test_lazy_command_help_is_the_commands_own():
    """The group's help line of a lazily loaded command is its docstring's first line."""
    import importlib

    from neurodeploy.cli import LAZY_COMMANDS
    for name, (module, attribute, short) in LAZY_COMMANDS.items():
        cmd = getattr(importlib.import_module(module), attribute)
        assert cmd.name == name
        assert cmd.help.strip().splitlines()[0] == short


def _conv_net() -> Network:
    rng = np.random.default_rng(1)
    w1 = 2 * rng.integers(-20, 20, (3, 2, 3, 3))
    w2 = 2 * rng.integers(-20, 20, (4, 3 * 2 * 2))
    return Network((Conv(w1, CubaNeuron(4096, 200, 40), shape=(3, 2, 2), stride=(2, 2)),
                    Flatten(shape=(3, 2, 2)), Dense(w2, CubaNeuron(1024, 100, 60))), (2, 6, 6))


def test_written_file_records_its_input_shape_and_layout(tmp_path):
    path = write_netx(_conv_net(), tmp_path / "c.net")
    with h5py.File(path) as f:
        assert f["layer/0/type"][0] == b"input" and "neuron" not in f["layer/0"]
        assert f["layer/0/shape"][()].tolist() == [2, 6, 6]  # torch order, as netx stores shapes
    net = read_netx(path)
    assert net.input_shape == (2, 6, 6) and net.input_layout == "CHW"
    assert net.input_shape_netx == (6, 6, 2)
    assert not net.has_input_layer and [i for i, _ in net.neuron_layers] == [1, 3]


def test_layout_conversions_are_inverse_and_reverse_the_feature_axes():
    x = np.arange(2 * 3 * 4 * 5 * 7).reshape(2, 3, 4, 5, 7)  # (n, C, H, W, T)
    y = layout.torch_to_netx(x, 3)
    assert y.shape == (2, 5, 4, 3, 7) and y[1, 4, 2, 0, 6] == x[1, 0, 2, 4, 6]
    assert np.array_equal(layout.netx_to_torch(y, 3), x)
    enc = np.moveaxis(x, -1, 1)  # (n, T, C, H, W): the training encoding
    assert np.array_equal(layout.encoded_to_netx(enc, (3, 4, 5)), y)


def test_torch_order_samples_are_refused_naming_the_order():
    net = _conv_net()
    with pytest.raises(InputError, match=r"torch order \(2, 6, 6\).*netx \(Lava port\) order"):
        layout.check_samples(np.zeros((4, 2, 6, 6, 5)), net, "inputs")
    assert layout.check_samples(np.zeros((6, 6, 2, 5)), net).shape == (1, 6, 6, 2, 5)


def test_bit_widths_and_delay_limit_agree_with_every_hardware_config():
    from neurodeploy.hardware.config import HW_CONFIG_DIR, load_hardware_config
    for path in sorted(HW_CONFIG_DIR.glob("*.yaml")):
        hw = load_hardware_config(path)
        assert hw.weight_bits == fx.WEIGHT_BITS, path
        assert hw.state_bits == fx.STATE_BITS, path
        assert hw.bias_mantissa_bits == fx.BIAS_MANTISSA_BITS, path
        assert hw.threshold_bits == fx.THRESHOLD_BITS, path
        assert hw.max_delay_steps == fx.MAX_DELAY == (1 << fx.DELAY_BITS) - 1, path
    assert fx.THRESHOLD_RANGE == (0, (1 << fx.THRESHOLD_BITS) - 1)
    assert fx.BIAS_RANGE == (-(1 << (fx.BIAS_MANTISSA_BITS - 1)), (1 << (fx.BIAS_MANTISSA_BITS - 1)) - 1)
    assert fx.NETX_MAX_DELAY == fx.MAX_DELAY - 1


def test_writer_refuses_delays_netx_would_clamp(tmp_path):
    w = 2 * np.ones((2, 3), np.int64)
    ok = Network((Dense(w, CubaNeuron(1024, 0, 10), delay=[fx.NETX_MAX_DELAY, 0]),), (3,))
    write_netx(ok, tmp_path / "ok.net")
    bad = Network((Dense(w, CubaNeuron(1024, 0, 10), delay=[fx.NETX_MAX_DELAY + 1, 0]),), (3,))
    with pytest.raises(fx.BitWidthError, match=r"layer 0: delay out of Loihi's range \[0, 62\]"):
        write_netx(bad, tmp_path / "bad.net")


def test_reader_clamps_delays_beyond_62_as_netx_does(tmp_path):
    w = 2 * np.ones((2, 3), np.int64)
    path = write_netx(Network((Dense(w, CubaNeuron(1024, 0, 10), delay=[5, 0]),), (3,)), tmp_path / "d.net")
    with h5py.File(path, "a") as f:
        f["layer/1/delay"][...] = [63, 0]
    with pytest.warns(UserWarning, match="delay 63 is beyond netx's 62; clamped"):
        net = read_netx(path)
    assert net.layers[1].delay.tolist() == [62, 0]


def test_per_neuron_fields_roundtrip_and_must_match_the_block(tmp_path):
    w = 2 * np.ones((3, 2), np.int64)
    neuron = CubaNeuron(np.array([1, 100, 4096]), np.array([0, 5, 4095]), np.array([10, 20, 30]))
    assert neuron.per_neuron == 3 and neuron.current_decay == (1, 100, 4096)
    path = write_netx(Network((Dense(w, neuron),), (2,)), tmp_path / "p.net")
    assert read_netx(path).layers[1].neuron == neuron
    with pytest.raises(ValueError, match="2 per-neuron decays/thresholds for a block of shape \\(3,\\)"):
        Dense(w, CubaNeuron((1, 2), 0, 10))
    with pytest.raises(fx.BitWidthError, match=r"voltage_decay \(vDecay\) out of Loihi's range"):
        CubaNeuron((1, 2, 3), (0, 4096, 0), 10)


def test_per_neuron_fields_in_the_torch_fallback_equal_the_compiled_loop(monkeypatch):
    """The simulator's loop without numba (the torch form of the step) takes
    per-neuron and per-channel fields as the compiled loop does (both are checked
    against Lava in test_netx_kinds_lava)."""
    from neurodeploy.sim import simulator
    rng = np.random.default_rng(4)
    net = Network((Conv(2 * rng.integers(-60, 60, (3, 2, 3, 3)),
                        CubaNeuron((1, 2048, 4096), (0, 100, 4095), (5, 40, 9)), shape=(3, 2, 2), stride=(2, 2)),
                   Flatten(shape=(3, 2, 2)),
                   Dense(2 * rng.integers(-80, 80, (5, 12)), CubaNeuron(rng.integers(1, 4097, 5), 7,
                                                                        rng.integers(0, 50, 5)))), (2, 6, 6))
    x = (rng.random((3, 6, 6, 2, 20)) < 0.5).astype(np.int64)
    compiled = simulator.simulate(net, x, record=True)
    monkeypatch.setattr(fx, "compiled_cuba_steps", lambda: None)
    fallback = simulator.simulate(net, x, record=True)
    assert compiled.spikes.sum() > 0
    for key, value in compiled.records.items():
        assert np.array_equal(value, fallback.records[key]), key
