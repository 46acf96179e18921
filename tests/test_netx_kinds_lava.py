"""netx files that lava-dl builds and Lava runs, beyond what our exporter writes:
per-neuron decays and thresholds (slayer's ``shared_param=False``), a sigma-output
SDNN block stored without ``vThMant`` (lava-dl's ``dendrite.Sigma``, micro-YOLO's
last layer), delays beyond netx's limit, and an image fed only through the input
layer's bias. The reader reads them and the simulator gives Lava's u, v and
spikes, step for step (Lava through lava-dl's netx is the reference)."""
from __future__ import annotations

import contextlib
import io

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Input, Network, SigmaDeltaNeuron
from neurodeploy.sim.simulator import simulate

pytestmark = [pytest.mark.slow, pytest.mark.lava]
lava_adapter = pytest.importorskip("neurodeploy.lava_adapter")
if not lava_adapter.lava_available():
    pytest.skip("Lava is not importable here", allow_module_level=True)


def _compare(path, x, steps=None, **kw):
    """Our u, v (CUBA) and messages of every neuron layer == Lava's, at every step."""
    net = read_netx(path)
    lava = lava_adapter.run_netx(path, x, steps=steps, probe=True, **kw)
    ours = simulate(net, x[None], steps=steps, record=True, **kw)
    assert np.array_equal(ours.spikes[0], lava.spikes), "output messages differ"
    for j, (i, block) in enumerate(net.neuron_layers):
        for var in ("u", "v", "s"):
            if f"{var}/{j}" in lava.probes and f"{var}/{i}" in ours.records:
                assert np.array_equal(ours.records[f"{var}/{i}"][0], lava.probes[f"{var}/{j}"]), (var, i)
    return ours, lava


def test_slayer_per_neuron_decays_match_lava(tmp_path):
    """A file slayer itself exports with ``shared_param=False`` (iDecay, vDecay arrays)."""
    torch = pytest.importorskip("torch")
    with contextlib.redirect_stdout(io.StringIO()):
        from lava.lib.dl import slayer
    torch.manual_seed(0)
    per_neuron = {"threshold": 0.5, "current_decay": 0.3, "voltage_decay": 0.05, "shared_param": False}
    shared = {"threshold": 0.5, "current_decay": 0.2, "voltage_decay": 0.1}
    blocks = [slayer.block.cuba.Dense(per_neuron, 12, 8, weight_scale=4, weight_norm=False),
              slayer.block.cuba.Dense(shared, 8, 4, weight_scale=4, weight_norm=False)]
    x = torch.rand(1, 12, 4)
    for b in blocks:  # the first forward draws the per-neuron decays
        x = b(x)
    path = tmp_path / "slayer.net"
    with h5py.File(path, "w") as f:
        for i, b in enumerate(blocks):
            b.export_hdf5(f.create_group(f"layer/{i}"))
    first = read_netx(path).layers[0].neuron
    assert first.per_neuron == 8 and len(set(first.current_decay)) > 1
    stream = (np.random.default_rng(0).random((12, 40)) < 0.4).astype(np.int64)
    ours, _ = _compare(path, stream)
    assert ours.records["s/0"].sum() > 0


def test_per_neuron_thresholds_and_per_channel_conv_match_lava(tmp_path):
    """Per-neuron iDecay, vDecay and vThMant in an input layer and a dense block, and
    per-channel ones in a conv block (Lava broadcasts them over the channel axis of
    (x, y, c)), with the extremes of each field."""
    rng = np.random.default_rng(3)
    inp = Input(shape=(2, 6, 6), neuron=CubaNeuron((4096, 1), (0, 4095), (0, 3)))
    conv = Conv(2 * rng.integers(-60, 60, (3, 2, 3, 3)), CubaNeuron((1, 2048, 4096), (0, 100, 4095), (5, 40, 131071)),
                shape=(3, 2, 2), stride=(2, 2))
    dense = Dense(2 * rng.integers(-80, 80, (5, 12)),
                  CubaNeuron(rng.integers(1, 4097, 5), rng.integers(0, 4096, 5), rng.integers(0, 200, 5)),
                  bias=rng.integers(-50, 50, 5))
    net = Network((inp, conv, Flatten(shape=(3, 2, 2)), dense), (2, 6, 6))
    path = write_netx(net, tmp_path / "pn.net")
    stream = rng.integers(0, 2, (6, 6, 2, 30)) * rng.integers(1, 40, (6, 6, 2, 30))  # graded into a_in
    ours, _ = _compare(path, stream, reset_interval=7)
    assert ours.records["s/1"].sum() > 0 and ours.records["s/3"].sum() > 0


def test_sigma_output_block_without_threshold_matches_lava(tmp_path):
    """micro-YOLO's last layer: ``neuron/`` holds only type SDNN and sigma_output."""
    rng = np.random.default_rng(5)
    hidden = Dense(2 * rng.integers(-60, 60, (6, 8)), SigmaDeltaNeuron(threshold=3))
    out = Dense(2 * rng.integers(-60, 60, (3, 6)), SigmaDeltaNeuron(threshold=1, sigma_output=True))
    net = Network((Input(shape=(8,), neuron=SigmaDeltaNeuron(threshold=2)), hidden, out), (8,))
    path = write_netx(net, tmp_path / "sigma.net")
    with h5py.File(path, "a") as f:
        n = f["layer/2/neuron"]
        for key in list(n.keys()):
            if key not in ("type", "sigma_output"):
                del n[key]
        assert sorted(f["layer/2/neuron"].keys()) == ["sigma_output", "type"]
    assert read_netx(path).layers[2].neuron == SigmaDeltaNeuron(threshold=None,
                                                                sigma_output=True)
    stream = rng.integers(-200, 200, (8, 25))
    ours, _ = _compare(path, stream)
    assert np.count_nonzero(ours.spikes) > 0


def test_delays_beyond_62_run_as_netx_clamps_them(tmp_path):
    w = 2 * np.random.default_rng(2).integers(-30, 60, (4, 5))
    net = Network((Dense(w, CubaNeuron(1024, 0, 20), delay=[1, 5, 62, 0]),), (5,))
    path = write_netx(net, tmp_path / "d.net")
    with h5py.File(path, "a") as f:
        f["layer/1/delay"][...] = [1, 63, 70, 0]  # another exporter's delays
    stream = (np.random.default_rng(1).random((5, 80)) < 0.5).astype(np.int64)
    with pytest.warns(UserWarning, match="clamped"):
        _compare(path, stream)


def test_simulate_with_only_a_bias_image_matches_lava(tmp_path):
    """``simulate --bias IMG.npy --steps T`` without ``--input`` runs the network
    driven by its input layer's bias alone, as Lava does."""
    rng = np.random.default_rng(7)
    net = Network((Input(shape=(2, 4, 4), neuron=CubaNeuron(4096, 0, 100)),
                   Conv(2 * rng.integers(0, 60, (3, 2, 3, 3)), CubaNeuron(4096, 50, 60), shape=(3, 2, 2)),
                   Flatten(shape=(3, 2, 2)),
                   Dense(2 * rng.integers(-40, 90, (4, 12)), CubaNeuron(2048, 100, 30))), (2, 4, 4))
    path = write_netx(net, tmp_path / "img.net")
    image = rng.integers(0, 300, (4, 4, 2))  # netx order
    np.save(tmp_path / "image.npy", image)
    from neurodeploy.cli import main
    res = CliRunner().invoke(main, ["simulate", str(path), "--bias", str(tmp_path / "image.npy"),
                                    "--steps", "20", "--output", str(tmp_path / "o.npz")])
    assert res.exit_code == 0, res.output
    lava = lava_adapter.run_netx(path, np.zeros((4, 4, 2, 1), np.int64), steps=20, input_bias=image)
    with np.load(tmp_path / "o.npz") as f:
        assert np.array_equal(f["spikes"], lava.spikes)
    assert lava.spikes.sum() > 0
    res = CliRunner().invoke(main, ["simulate", str(path), "--bias", str(tmp_path / "image.npy"),
                                    "--output", str(tmp_path / "o.npz")])
    assert res.exit_code == 2 and "needs --steps" in res.output


def test_lava_delay_dense_takes_the_chips_6_bit_delays_and_no_more():
    """fixedpoint.MAX_DELAY (hw_configs' max_delay_steps) is what Lava's bit-accurate
    DelayDense allows "for Loihi": 63 runs, 64 is refused. Each run is its own
    process: Lava's runtime can hang on stop() after a process model raised."""
    import subprocess
    import sys

    from neurodeploy import fixedpoint as fx

    code = (
        "import numpy as np, sys\n"
        "from lava.magma.core.run_conditions import RunSteps\n"
        "from lava.magma.core.run_configs import Loihi2SimCfg\n"
        "from lava.proc.dense.process import DelayDense\n"
        "p = DelayDense(weights=np.ones((1, 1), int), delays=np.full((1, 1), int(sys.argv[1]), int))\n"
        "p.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag='fixed_pt'))\n"
        "p.stop()\n"
        "print('ran')\n")
    for delay, ok in ((fx.MAX_DELAY, True), (fx.MAX_DELAY + 1, False)):
        try:
            r = subprocess.run([sys.executable, "-c", code, str(delay)], capture_output=True, text=True,
                               timeout=120)
            out = r.stdout + r.stderr
        except subprocess.TimeoutExpired as e:  # the refused case can hang in Lava's stop()
            out = (e.stdout or b"").decode() + (e.stderr or b"").decode()
            r = None
        if ok:
            assert r is not None and r.returncode == 0 and "ran" in r.stdout, out[-2000:]
        else:  # the model's check ("between 0 and 63 for Loihi") fails the run in its process
            assert "ran" not in (r.stdout if r is not None else out), out[-2000:]
            assert r is None or (r.returncode != 0 and "Exception" in out), out[-2000:]


def _written_kinds():
    """One network of each kind our writer produces."""
    rng = np.random.default_rng(11)
    cuba = CubaNeuron(1024, 100, 40)
    conv = Conv(2 * rng.integers(-20, 20, (3, 2, 3, 3)), cuba, shape=(3, 2, 2), stride=(2, 2))
    dense = Dense(2 * rng.integers(-20, 20, (4, 12)), cuba, bias=rng.integers(-9, 9, 4))
    return {
        "dense": Network((Dense(2 * rng.integers(-20, 20, (5, 7)), cuba),), (7,)),
        "conv, no input neurons": Network((conv, Flatten(shape=(3, 2, 2)), dense), (2, 6, 6)),
        "conv, input layer": Network((Input(shape=(2, 6, 6), neuron=cuba), conv, Flatten(shape=(3, 2, 2)),
                                      dense), (2, 6, 6)),
        "recurrent": Network((Dense(2 * rng.integers(-20, 20, (5, 7)), cuba,
                                    weight_rec=2 * rng.integers(-20, 20, (5, 5))),), (7,)),
        "per-neuron": Network((Dense(2 * rng.integers(-20, 20, (3, 7)), CubaNeuron((1, 9, 4096), 3, (1, 2, 3)),
                                     delay=[0, 3, 62]),), (7,)),
        "sigma-delta": Network((Input(shape=(7,), neuron=SigmaDeltaNeuron(threshold=2)),
                                Dense(2 * rng.integers(-20, 20, (3, 7)), SigmaDeltaNeuron(threshold=None,
                                                                                      sigma_output=True))), (7,)),
    }


@pytest.mark.parametrize("kind", list(_written_kinds()))
def test_lava_dl_builds_every_kind_of_file_we_write(tmp_path, kind):
    """lava-dl's ``netx.hdf5.Network`` builds each file from the file alone (no
    input_shape argument): its layers are our neuron layers, its input port takes
    our input shape in netx order."""
    netx = lava_adapter._import_lava()[0]
    path = write_netx(_written_kinds()[kind], tmp_path / "k.net")
    ours = read_netx(path)
    net = netx.hdf5.Network(net_config=str(path))
    assert len(net.layers) == len(ours.neuron_layers)
    port = net.layers[0].neuron.a_in if ours.has_input_layer else net.inp
    assert tuple(port.shape) == ours.input_shape_netx
    assert tuple(net.out.shape) == tuple(ours.output_shape[::-1])
