"""Residual networks: the simulator against Lava's fixed-point process models
(netx's chain plus a Sparse / DelaySparse process per shortcut into the target
neurons' a_in), every state variable of every layer at every step, on random
residual networks. Slow: each Lava run costs seconds."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from residual_nets import random_conv_resnet, random_dense_resnet

from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.network import holds_neurons
from neurodeploy.sim.samples import lava_outputs, simulated_outputs
from neurodeploy.sim.simulator import simulate

pytestmark = [pytest.mark.slow, pytest.mark.lava]
lava_adapter = pytest.importorskip("neurodeploy.lava_adapter")
if not lava_adapter.lava_available():
    pytest.skip("Lava is not importable here", allow_module_level=True)

SETTINGS = settings(max_examples=4, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def _compare_every_state(net, x, reset_interval):
    ours = simulate(net, x[None], record=True, reset_interval=reset_interval)
    lava = lava_adapter.run_residual_network(net, x, reset_interval=reset_interval, probe=True)
    assert np.array_equal(ours.spikes[0], lava.spikes), "output spikes differ"
    blocks = [i for i, b in enumerate(net.layers) if holds_neurons(b)]
    for j, i in enumerate(blocks):
        for var in ("u", "v", "s"):
            assert np.array_equal(ours.records[f"{var}/{i}"][0], lava.probes[f"{var}/{j}"]), (var, i)
    return ours


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), blocks=st.integers(1, 2), bias=st.booleans(),
       reset=st.sampled_from([None, 7]))
def test_random_conv_residual_networks_match_lava(seed, blocks, bias, reset):
    net = random_conv_resnet(seed, blocks, bias)
    rng = np.random.default_rng(seed + 1)
    x = (rng.random((*net.input_shape_netx, 20)) < 0.4).astype(np.int8)
    ours = _compare_every_state(net, x, reset)
    assert any(ours.records[f"s/{sc.target}"].any() for sc in net.shortcuts)  # the test sees spikes


@SETTINGS
@given(seed=st.integers(0, 2 ** 16), blocks=st.integers(1, 3))
def test_random_dense_residual_networks_match_lava(seed, blocks):
    net = random_dense_resnet(seed, blocks)
    rng = np.random.default_rng(seed + 1)
    x = (rng.random((*net.input_shape_netx, 20)) < 0.5).astype(np.int8)
    _compare_every_state(net, x, None)


def test_residual_file_runs_as_independent_samples_on_lava(tmp_path):
    """Samples through the written file, one stream with netx's resets on Lava, one
    stream per sample in the simulator: the aligned shortcut delays keep every
    sample in its own window on both."""
    net = random_conv_resnet(11, blocks=2, aligned=True)
    path = write_netx(net, tmp_path / "res.net")
    back = read_netx(path)
    rng = np.random.default_rng(3)
    samples = (rng.random((5, *net.input_shape_netx, 12)) < 0.4).astype(np.int8)
    ours = simulated_outputs(back, samples)
    lava = lava_outputs(path, back, samples)
    assert ours.any()
    assert np.array_equal(ours, lava)


def test_bundle_runs_residual_network_on_lava_as_the_simulator(tmp_path):
    """The bundle's own run.py (no neurodeploy import) builds the shortcuts from
    shortcuts.npz and predicts on Lava what the simulator predicts."""
    import json
    import subprocess
    import sys

    from neurodeploy.hardware.bundle import write_bundle

    net = random_conv_resnet(11, blocks=2, aligned=True)
    path = write_netx(net, tmp_path / "res.net")
    rng = np.random.default_rng(4)
    samples = (rng.random((4, *net.input_shape_netx, 10)) < 0.4).astype(np.int8)
    b = write_bundle(path, tmp_path / "bundle", inputs=samples, labels=np.arange(4) % 4)
    assert (b / "chain.net").exists() and (b / "shortcuts.npz").exists()
    subprocess.run([sys.executable, str(b / "run.py"), "--sim"], check=True, cwd=b, capture_output=True)
    got = json.loads((b / "results.json").read_text())["predictions"]
    want = simulated_outputs(read_netx(path), samples)
    assert want.any()
    assert got == want.sum(-1).argmax(1).tolist()
