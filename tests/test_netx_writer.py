"""The netx writer, read back through lava-dl's own netx into Lava processes."""
import re

import h5py
import numpy as np
import pytest
from conftest import requires_lava

from neurodeploy import fixedpoint as fx
from neurodeploy.export.netx import NetxFormatError, read_netx, write_netx
from neurodeploy.network import CubaNeuron, Dense, Input, Network, SigmaDeltaNeuron


def _network(rng):
    w1 = fx.quantize_weights(rng.normal(0, 0.3, (12, 9)), 8)
    w2 = fx.quantize_weights(np.abs(rng.normal(0, 0.3, (4, 12))), 8)  # excitatory layer
    return Network((Dense(w1, CubaNeuron(1024, 123, 256)),
                    Dense(w2, CubaNeuron(4096, 0, 300), bias=np.arange(4) - 2)), (9,))


def test_write_read_roundtrip(tmp_path):
    net = _network(np.random.default_rng(0))
    path = write_netx(net, tmp_path / "m.net")
    back = read_netx(path)
    # the file names its input shape: a neuron-less input block first
    assert isinstance(back.layers[0], Input) and back.layers[0].neuron is None
    assert back.input_shape == (9,) and not back.has_input_layer
    for a, b in zip(net.layers, back.layers[1:], strict=True):
        assert np.array_equal(a.weight, b.weight)
        assert a.neuron == b.neuron
    assert np.array_equal(back.layers[2].bias, [-2, -1, 0, 1])
    with h5py.File(path) as f:  # netx layout: datasets only, S10 type, torch-order shape
        assert f["layer/0/type"][0] == b"input" and "neuron" not in f["layer/0"]
        assert f["layer/0/shape"][()].tolist() == [9]
        assert f["layer/1/type"][0] == b"dense"
        assert f["layer/1/shape"][()].tolist() == [12]
        assert f["layer/2/neuron/iDecay"][()] == 4096


def test_writer_refuses_weights_lava_would_change(tmp_path):
    w = np.array([[3, -3]])  # odd mixed-sign weights: Lava would use 2, -4
    net = Network((Dense(w, CubaNeuron(1024, 0, 10)),), (2,))
    with pytest.raises(fx.BitWidthError, match=r"layer 0: weight\[\(0, 0\)\] = 3"):
        write_netx(net, tmp_path / "bad.net")
    assert not (tmp_path / "bad.net").exists()


def test_reader_names_missing_dataset(tmp_path):
    path = write_netx(_network(np.random.default_rng(0)), tmp_path / "m.net")
    with h5py.File(path, "a") as f:
        del f["layer/2/neuron/vThMant"]
    with pytest.raises(NetxFormatError, match=r"layer 2 \(dense\)/neuron \(CUBA\): missing dataset 'vThMant'"):
        read_netx(path)


def test_reader_rejects_non_hdf5(tmp_path):
    p = tmp_path / "junk.net"
    p.write_bytes(b"not hdf5 at all")
    with pytest.raises(NetxFormatError, match="not a readable HDF5"):
        read_netx(p)


def _sigma_delta_file(path):
    net = Network((Input(shape=(4,), neuron=SigmaDeltaNeuron(threshold=2)),
                   Dense(2 * np.arange(-6, 6).reshape(3, 4), SigmaDeltaNeuron(threshold=3))), (4,))
    return write_netx(net, path)


def _set_activation(path, activation):
    with h5py.File(path, "a") as f:
        del f["layer/1/neuron/activation"]
        f.create_dataset("layer/1/neuron/activation", data=activation)


def test_sigma_delta_activation_is_written_as_lava_runs_it(tmp_path):
    path = _sigma_delta_file(tmp_path / "sd.net")
    with h5py.File(path) as f:   # the field slayer writes, with the one value Lava's netx runs
        assert f["layer/1/neuron/activation"][()] == b"relu"
    assert read_netx(path).layers[1].neuron == SigmaDeltaNeuron(threshold=3)


@pytest.mark.parametrize("activation", ["identity", "tanh", "<lambda>"])
def test_reader_refuses_an_activation_lava_would_not_apply(tmp_path, activation):
    path = _sigma_delta_file(tmp_path / "sd.net")
    _set_activation(path, activation)
    with pytest.raises(NetxFormatError, match=r"layer 1 \(dense\)/neuron \(SDNN\): activation '"
                       + re.escape(activation) + "' is not supported"):
        read_netx(path)


def test_unsupported_activation_is_one_line_with_exit_code_2(tmp_path):
    from click.testing import CliRunner

    from neurodeploy.cli import main
    path = _sigma_delta_file(tmp_path / "sd.net")
    _set_activation(path, "identity")
    res = CliRunner().invoke(main, ["map", str(path), "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "sd.net" in lines[0], res.stderr
    assert "activation 'identity'" in lines[0]
    assert not (tmp_path / "m.json").exists()


@requires_lava
@pytest.mark.lava
def test_lava_netx_builds_the_parameters_we_wrote(tmp_path):
    from neurodeploy.lava_adapter import _import_lava

    netx = _import_lava()[0]
    net = _network(np.random.default_rng(3))
    path = write_netx(net, tmp_path / "m.net")
    lava_net = netx.hdf5.Network(net_config=str(path))
    for ours, theirs in zip(net.layers, lava_net.layers):
        n = theirs.neuron
        assert int(n.vth.init) == ours.neuron.threshold
        assert int(n.du.init) == ours.neuron.current_decay - 1  # the +1 current-decay offset
        assert int(n.dv.init) == ours.neuron.voltage_decay
        params = theirs.synapse.proc_params
        exp = params["weight_exp"]
        # Lava's Dense clips/truncates, then shifts by weight_exp: the effective integer
        # weights must be exactly ours.
        w = fx.effective_weights(theirs.synapse.weights.init, params["num_weight_bits"])
        eff = w * 2.0 ** exp
        assert np.array_equal(eff, ours.weight)
        assert exp <= 0
    bias = lava_net.layers[1].neuron.bias_mant.init
    assert np.array_equal(np.asarray(bias).ravel(), [-2, -1, 0, 1])
    assert int(lava_net.layers[1].neuron.bias_exp.init) == fx.BIAS_EXP
