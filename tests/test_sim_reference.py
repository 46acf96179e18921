"""The fast simulator (neurodeploy.sim.simulator: chunked products, compiled loops, byte
transposes) against the step-at-a-time reference runner (neurodeploy.sim.reference),
bit for bit: the output, and every layer's u, v, sigma, SRC state and messages, on
every network kind the test suite simulates, on lava-dl's netx test files, and on
random networks. Both are held to Lava's fixed-point models elsewhere
(tests/test_sim_lava.py, test_netx_kinds_lava.py, test_sim.py's Loihi 2 traces)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from residual_nets import random_conv_resnet, random_dense_resnet
from sim_networks import NETX_FILES, SMALL_NETWORKS, netx_file_case

from neurodeploy import fixedpoint as fx
from neurodeploy.lava_adapter import lava_dl_test_data
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Input, Network, SigmaDeltaNeuron
from neurodeploy.sim import reference
from neurodeploy.sim.simulator import simulate

ROOT = Path(__file__).resolve().parents[1]
GTS = lava_dl_test_data()


def assert_same_run(net, x, chunk_steps=None, **kw):
    """The fast simulator's output and records equal the reference runner's."""
    ref = reference.run(net, x, **kw)
    fast = simulate(net, x, record=True, chunk_steps=chunk_steps, **kw)
    assert np.array_equal(fast.spikes, ref.spikes)
    assert sorted(fast.records) == sorted(ref.records)
    for key, value in ref.records.items():
        assert np.array_equal(fast.records[key], value), key
    return ref


def _inputs(net, rng, density, batch=3, steps=9):
    feed = tuple(net.input_shape[::-1])
    if density >= 1:  # graded values up to density
        return rng.integers(-density, density + 1, (batch,) + feed + (steps,))
    return (rng.random((batch,) + feed + (steps,)) < density).astype(np.int8)


@pytest.fixture(params=["compiled", "integer steps"])
def neuron_path(request, monkeypatch):
    """The fast simulator's compiled neuron loops, or its step-at-a-time path (no numba)."""
    if request.param == "integer steps":
        monkeypatch.setattr(fx, "compiled_cuba_steps", lambda: None)
        monkeypatch.setattr(fx, "compiled_sigma_delta_steps", lambda: None)
    return request.param


@pytest.mark.parametrize("name,net,density,bias", SMALL_NETWORKS, ids=[c[0] for c in SMALL_NETWORKS])
def test_every_block_kind_matches_the_reference(name, net, density, bias, neuron_path):
    """Dense, conv (grouped, dilated, padded, strided), recurrent, delays, per-neuron
    fields, biases, input layers (CUBA, sigma-delta, bias-driven), graded input,
    sigma-delta and sigma outputs, SRC: with resets, and chunks that split the run."""
    rng = np.random.default_rng(11)
    x = _inputs(net, rng, density)
    for chunk in (None, 4):
        ref = assert_same_run(net, x, chunk_steps=chunk, steps=13, reset_interval=6, reset_offset=1,
                              input_bias=bias)
    assert ref.spikes.any()


@pytest.mark.parametrize("seed", range(3))
def test_residual_networks_match_the_reference(seed):
    """Conv shortcuts (identity and strided projections, aligned and longer delays)
    and dense shortcuts, beside each block's own synapse."""
    rng = np.random.default_rng(seed)
    for net in (random_conv_resnet(seed, bias=True), random_conv_resnet(seed + 10, blocks=1, aligned=True),
                random_dense_resnet(seed, blocks=3)):
        x = _inputs(net, rng, 0.4, batch=2, steps=11)
        ref = assert_same_run(net, x, chunk_steps=5, steps=17, reset_interval=7)
        assert ref.records[f"s/{net.neuron_layers[-2][0]}"].any()


def _benchmark_networks():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sim_speed
    rng = np.random.default_rng(0)
    return [sim_speed.dense_net([100, 50, 10], rng), sim_speed.dense_net([784, 512, 512, 10], rng),
            sim_speed.conv_net(rng), sim_speed.sparse_net(rng), sim_speed.recurrent_net(rng)]


@pytest.mark.parametrize("index", range(5))
def test_benchmark_networks_match_the_reference(index):
    """benchmarks/sim_speed.py's networks: dense at 20 % input (int8 GEMM) and at 3 %
    (event-driven sums), conv with an input layer, recurrent."""
    net = _benchmark_networks()[index]
    rng = np.random.default_rng(index)
    x = _inputs(net, rng, 0.03 if index >= 3 else 0.2, batch=4, steps=24)
    ref = assert_same_run(net, x, steps=30)
    assert ref.records[f"s/{net.neuron_layers[0][0]}"].any()


@pytest.mark.skipif(GTS is None, reason="lava-dl's netx test files are not installed")
@pytest.mark.parametrize("name,blocks,steps,reset,inp,bias", NETX_FILES, ids=[f[0] for f in NETX_FILES])
def test_lava_dl_netx_files_match_the_reference(name, blocks, steps, reset, inp, bias):
    """lava-dl's netx test networks (PilotNet SDNN and LIF, N-TIDIGITS with delays,
    the bias-driven tiny network, MNIST on graded pixels), with their inputs and resets."""
    # MNIST's input layer takes graded pixels (0/1 inputs stay below its threshold)
    net, x, input_bias = netx_file_case(
        GTS, name, blocks, inp, bias, lambda shape: np.random.default_rng(0).integers(0, 256, shape + (10,)))
    ref = assert_same_run(net, x, steps=min(steps or 40, 40), reset_interval=reset, input_bias=input_bias)
    assert any(v.any() for k, v in ref.records.items() if k.startswith("s/"))


def _weights(draw, rng, shape):
    """8-bit weights of a random sign mode and scale (so netx's inferred exponent varies)."""
    top = draw(st.sampled_from([3, 20, 63, 127]))
    w = rng.integers(-top, top + 1, shape) * draw(st.sampled_from([1, 2]))
    mode = draw(st.sampled_from(["mixed", "excitatory", "inhibitory"]))
    return np.abs(w) if mode == "excitatory" else -np.abs(w) if mode == "inhibitory" else w


def _cuba(draw, rng, n):
    if draw(st.booleans()):  # per-neuron fields
        return CubaNeuron(tuple(int(v) for v in rng.integers(1, 4097, n)),
                          tuple(int(v) for v in rng.integers(0, 4096, n)),
                          tuple(int(v) for v in rng.integers(0, 300, n)))
    return CubaNeuron(draw(st.integers(1, 4096)), draw(st.integers(0, 4095)), draw(st.integers(0, 300)))


@st.composite
def random_networks(draw):
    """A chain of 1-3 dense or conv blocks of CUBA or sigma-delta neurons, with or
    without an input layer, delays, recurrence and biases -> (network, inputs, kw)."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    sd = draw(st.booleans())
    conv = draw(st.booleans())
    shape = input_shape = (2, 5, 5) if conv else (draw(st.integers(1, 12)),)
    layers = []
    if draw(st.booleans()):
        layers.append(Input(shape=shape, neuron=SigmaDeltaNeuron(draw(st.integers(0, 3))) if sd
                            else _cuba(draw, rng, shape[0])))
    if conv:
        c = draw(st.integers(1, 3))
        layers.append(Conv(weight=_weights(draw, rng, (c, 2, 3, 3)),
                           neuron=SigmaDeltaNeuron(2) if sd else _cuba(draw, rng, c), shape=(c, 3, 3),
                           stride=(2, 2), padding=(1, 1),
                           bias=rng.integers(-99, 99, c) if draw(st.booleans()) else None))
        layers.append(Flatten(shape=(c * 9,)))
        shape = (c * 9,)
    for _ in range(draw(st.integers(1, 2))):
        n = draw(st.integers(1, 10))
        recurrent = draw(st.booleans())
        delays = not recurrent and draw(st.booleans())
        layers.append(Dense(weight=_weights(draw, rng, (n, shape[0])),
                            neuron=SigmaDeltaNeuron(draw(st.integers(0, 4))) if sd else _cuba(draw, rng, n),
                            weight_rec=_weights(draw, rng, (n, n)) if recurrent else None,
                            delay=rng.integers(0, 5, n) if delays else None,
                            bias=rng.integers(-300, 300, n) if draw(st.booleans()) else None))
        shape = (n,)
    graded = sd and not isinstance(layers[0], Input)
    net = Network(layers=tuple(layers), input_shape=input_shape, input_message_bits=8 if graded else 0)
    x = _inputs(net, rng, 100 if sd else draw(st.sampled_from([0.1, 0.5])), batch=2,
                steps=draw(st.integers(1, 12)))
    kw = dict(steps=draw(st.integers(1, 20)), reset_interval=draw(st.sampled_from([None, 1, 3, 8])),
              reset_offset=draw(st.integers(0, 3)))
    return net, x, kw


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_networks(), st.sampled_from([None, 3]))
def test_random_networks_match_the_reference(case, chunk):
    net, x, kw = case
    assert_same_run(net, x, chunk_steps=chunk, **kw)


def test_a_dense_block_with_one_input_matches_the_reference():
    """A (N, 1) weight matrix: its int8 GEMM operand is (1, N), which torch's kernel
    misreads unless the size-1 axis has the row stride N."""
    net = Network(layers=(Dense(weight=np.array([[2], [1], [0]]), neuron=CubaNeuron(1, 0, 0)),
                          Dense(weight=np.array([[-2, -1, -3]]), neuron=CubaNeuron(1, 0, 0))), input_shape=(1,))
    ref = assert_same_run(net, np.ones((2, 1, 1), np.int8), steps=3)
    assert ref.records["u/0"][:, :, 1].tolist() == [[128, 64, 0]] * 2


@pytest.mark.lava
def test_dense_weights_without_a_positive_weight_follow_lava_dl():
    """Weights <= 0 with some zero are mixed-sign for netx (its 127 / 0 is numpy's inf):
    the exponent and Lava Dense's integers equal what lava-dl's netx builds."""
    from neurodeploy import lava_adapter
    try:
        lava_adapter._import_lava()
    except lava_adapter.LavaUnavailableError:
        pytest.skip("lava-dl is not importable")
    from lava.lib.dl.netx import utils
    for weight in (np.array([[-2, -1, -3], [0, -4, -6]]), np.array([[0, -1, -3]]), np.array([[0, -128]])):
        w, e = fx.netx_dense_weights(weight)
        with np.errstate(divide="ignore"):
            scaled, bits, exponent, _ = utils.optimize_weight_bits(weight)
        assert e == exponent
        assert np.array_equal(w, fx.effective_weights(np.asarray(scaled), bits))
