"""The bit-accurate simulator: chunking, cyclic input, errors, and exactness against
Lava's fixed-point processes on random networks (hypothesis)."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LAVA
from neurodeploy import fixedpoint as fx
from neurodeploy.export.netx import write_netx
from neurodeploy.network import CubaNeuron, Dense, Network
from neurodeploy.sim.simulator import simulate


def _net(rng, sizes, neuron=None, weight_scale=60.0, bias=False):
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        w = fx.quantize_weights(rng.normal(0, weight_scale, (o, i)), 0)
        n = neuron or CubaNeuron(int(rng.integers(1, 4097)), int(rng.integers(0, 4096)), int(rng.integers(1, 300)))
        b = rng.integers(-40, 40, o) if bias else None
        layers.append(Dense(w, n, bias=b))
    return Network(tuple(layers), (sizes[0],))


def test_chunked_time_equals_one_chunk_with_resets_and_records():
    rng = np.random.default_rng(0)
    net = _net(rng, [12, 20, 6], bias=True)
    x = (rng.random((5, 12, 37)) < 0.3).astype(np.int8)
    whole = simulate(net, x, steps=90, reset_interval=13, record=True, chunk_steps=1000)
    parts = simulate(net, x, steps=90, reset_interval=13, record=True, chunk_steps=7)
    assert whole.spikes.sum() > 0
    assert np.array_equal(whole.spikes, parts.spikes)
    for key in whole.records:
        assert np.array_equal(whole.records[key], parts.records[key]), key


def test_input_repeats_cyclically_like_lavas_ring_buffer():
    rng = np.random.default_rng(1)
    net = _net(rng, [8, 10, 4])
    x = (rng.random((3, 8, 10)) < 0.5).astype(np.int8)
    a = simulate(net, x, steps=30).spikes
    b = simulate(net, np.concatenate([x, x, x], axis=-1)).spikes
    assert np.array_equal(a, b)


def test_compiled_loop_equals_torch_step():
    rng = np.random.default_rng(2)
    a = rng.integers(-(1 << 15), 1 << 15, (40, 300))
    p = fx.CubaParameters(4096, 0, 5)
    bias = rng.integers(-4096, 4096, 300)
    reset = rng.random(40) < 0.1
    spikes, (u, v), ur, vr = fx.cuba_run(a, p, bias, reset, record=True)
    state = fx.cuba_initial_state((300,))
    for k in range(40):
        if reset[k]:
            state = fx.cuba_initial_state((300,))
        s, state = fx.cuba_step(torch.from_numpy(a[k]), state, p, torch.from_numpy(bias))
        assert np.array_equal(s.numpy(), spikes[k].astype(bool))
        assert np.array_equal(state.current.numpy(), ur[k]) and np.array_equal(state.voltage.numpy(), vr[k])


def test_wrong_input_shape_and_dtype_are_named():
    net = _net(np.random.default_rng(0), [8, 4])
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 8, T\)"):
        simulate(net, np.zeros((2, 9, 5), np.int8))
    with pytest.raises(ValueError, match="must be integers"):
        simulate(net, np.full((2, 8, 5), 0.5))


# --- against Lava -------------------------------------------------------------
lava = pytest.mark.skipif(not LAVA, reason="lava-nc / lava-dl not installed (they need CPython 3.10)")


@st.composite
def random_case(draw):
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    depth = draw(st.integers(1, 3))
    sizes = [draw(st.integers(1, 24)) for _ in range(depth + 1)]
    extreme = draw(st.sampled_from(["none", "fast_decay", "no_leak", "wrap", "saturate"]))
    sign = draw(st.sampled_from(["mixed", "excitatory", "inhibitory"]))
    layers = []
    for i, o in zip(sizes[:-1], sizes[1:]):
        w = rng.normal(0, 80, (o, i))
        w = np.abs(w) if sign == "excitatory" else -np.abs(w) if sign == "inhibitory" else w
        if extreme == "fast_decay":
            n = CubaNeuron(4096, 4095, int(rng.integers(1, 100)))  # du = 4095, dv = 4095
        elif extreme == "no_leak":
            n = CubaNeuron(1, 0, int(rng.integers(1, 2000)))  # du = 0, dv = 0
        elif extreme in ("wrap", "saturate"):
            n = CubaNeuron(1, 0, (1 << 17) - 1)  # never fires: u wraps, v saturates
        else:
            n = CubaNeuron(int(rng.integers(1, 4097)), int(rng.integers(0, 4096)), int(rng.integers(1, 500)))
        bias = rng.integers(-4096, 4096, o) if draw(st.booleans()) else None
        layers.append(Dense(fx.quantize_weights(w, 0), n, bias=bias))
    net = Network(tuple(layers), (sizes[0],))
    steps = draw(st.integers(1, 40))
    if extreme == "wrap":  # graded input large enough to push u past 2**23
        x = rng.integers(0, 120, (sizes[0], steps))
    else:
        x = (rng.random((sizes[0], steps)) < rng.uniform(0.1, 0.9)).astype(np.int64)
    reset = draw(st.sampled_from([None, 5, 11]))
    return net, x, reset


@lava
@pytest.mark.lava
@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(case=random_case())
def test_random_dense_networks_are_spike_and_state_exact_against_lava(case, tmp_path_factory):
    from neurodeploy.lava_adapter import run_netx

    net, x, reset = case
    path = write_netx(net, tmp_path_factory.mktemp("net") / "r.net")
    steps = x.shape[-1] + len(net.layers) + 3
    ours = simulate(net, x, steps=steps, reset_interval=reset, record=True)
    theirs = run_netx(path, x, steps=steps, reset_interval=reset)
    assert np.array_equal(ours.spikes, theirs.spikes)
