"""Networks of every block kind the simulators run, shared by the tests that hold one
simulator to another (tests/test_sim_cuda.py, tests/test_sim_reference.py)."""
from __future__ import annotations

import numpy as np

from neurodeploy import fixedpoint_src as fxs
from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Input, Network, SigmaDeltaNeuron, SrcNeuron


def small_networks():
    """(name, network, input density (< 1: binary; else graded values up to it), input bias)."""
    rng = np.random.default_rng(7)
    lif = CubaNeuron(1024, 256, 80)
    w = lambda *s: 2 * rng.integers(-40, 40, s)  # noqa: E731
    yield "dense with bias and per-neuron fields", Network(layers=(
        Dense(weight=w(24, 30), neuron=CubaNeuron(tuple(rng.integers(500, 4096, 24)), 256,
                                                  tuple(rng.integers(20, 90, 24))),
              bias=rng.integers(-40, 40, 24)),
        Dense(weight=w(10, 24), neuron=lif)), input_shape=(30,)), 0.2, None
    yield "conv input layer", Network(layers=(
        Input(shape=(2, 9, 9), neuron=CubaNeuron(4096, 0, 0)),
        Conv(weight=w(4, 2, 3, 3), neuron=lif, shape=(4, 4, 4), stride=(2, 2)),
        Flatten(shape=(64,)), Dense(weight=w(5, 64), neuron=lif)), input_shape=(2, 9, 9)), 0.3, None
    yield "grouped, dilated, padded conv", Network(layers=(
        Conv(weight=w(4, 1, 3, 3), neuron=lif, shape=(4, 7, 7), padding=(1, 1), dilation=(2, 2), groups=2),
        Flatten(shape=(196,)), Dense(weight=w(5, 196), neuron=lif)), input_shape=(2, 9, 9)), 0.3, None
    yield "recurrent", Network(layers=(
        Dense(weight=w(16, 30), weight_rec=w(16, 16) // 2, neuron=lif),
        Dense(weight=w(6, 16), neuron=lif)), input_shape=(30,)), 0.2, None
    yield "delays", Network(layers=(
        Dense(weight=w(16, 30), neuron=lif, delay=rng.integers(0, 4, 16)),
        Dense(weight=w(6, 16), neuron=lif)), input_shape=(30,)), 0.2, None
    sd = SigmaDeltaNeuron(threshold=2)
    yield "sigma-delta, graded input, delays", Network(layers=(
        Input(shape=(12,), neuron=SigmaDeltaNeuron(threshold=1)),
        Dense(weight=w(16, 12), neuron=sd, bias=rng.integers(-50, 50, 16)),
        Dense(weight=w(8, 16), neuron=sd, delay=rng.integers(0, 3, 8)),
        Dense(weight=w(4, 8), neuron=SigmaDeltaNeuron(threshold=0, sigma_output=True))),
        input_shape=(12,)), 60, None
    yield "recurrent sigma-delta", Network(layers=(
        Input(shape=(12,), neuron=SigmaDeltaNeuron(threshold=1)),
        Dense(weight=w(10, 12), weight_rec=w(10, 10) // 4, neuron=sd),
        Dense(weight=w(4, 10), neuron=sd)), input_shape=(12,)), 60, None
    def src(output, shift):  # the cell's own tables, as tests/test_src_lava.py draws them
        e = 3
        return SrcNeuron(input_decay=1200, input_shift=shift, x_shift=4,
                         x_table=tuple(int(v) for v in fxs.rho_table(2.0, fxs.x_table_shift(3.0, e), e)),
                         h_shift=5, h_table=tuple(int(v) for v in fxs.tanh_table()), gain_fast=90,
                         gain_slow=-40, update_decay=800, gate_threshold=fxs.UNIT // 4, slow_decay_rest=300,
                         slow_decay_active=2000, output=output, message_shift=4, reset_state=0)
    yield "SRC layers (on the host)", Network(layers=(
        Dense(weight=w(12, 30) * 3, neuron=src("graded", 6), bias=rng.integers(-300, 300, 12)),
        Dense(weight=w(4, 12), neuron=src("current", 2))), input_shape=(30,)), 0.4, None
    yield "bias-driven input layer", Network(layers=(
        Input(shape=(3, 6, 6), neuron=CubaNeuron(1024, 128, 40)),
        Conv(weight=w(4, 3, 3, 3), neuron=lif, shape=(4, 4, 4)),
        Flatten(shape=(64,)), Dense(weight=w(5, 64), neuron=lif)), input_shape=(3, 6, 6)), 0.0, \
        rng.integers(0, 200, (6, 6, 3))


SMALL_NETWORKS = list(small_networks())


NETX_FILES = [  # (file, blocks read, steps, reset_interval, input, input_bias)
    ("gts/pilotnet_sdnn/network.net", None, 20, None, "gts/pilotnet_sdnn/input.npy", None),
    ("gts/ntidigits/ntidigits.net", 5, None, None, "gts/ntidigits/input.npy", None),
    ("gts/pilotnet_lif/network.net", None, 24, 16, "gts/pilotnet_lif/input.npy", None),
    ("tiny.net", 3, 19, 16, None, "gts/tinynet/input_bias.npy"),
    ("mnist.net", None, 30, None, None, None),
]


def netx_file_case(gts, name, blocks, inp, bias, draw_input):
    """(network, inputs, input bias) of one NETX_FILES entry in lava-dl's test data
    ``gts``: the file's own inputs where it has some, else ``draw_input(shape)`` for
    inputs of netx shape ``shape`` (one zero step for a bias-driven network); skips the
    test when the file is not installed."""
    import pytest

    from neurodeploy.export.netx import read_netx

    if not (gts / name).exists():
        pytest.skip(f"{name} is not installed")
    net = read_netx(gts / name, **({} if blocks is None else {"num_layers": blocks}))
    shape = tuple(net.input_shape[::-1])
    if inp is not None:
        x = np.load(gts / inp)
    elif bias is None:
        x = draw_input(shape)
    else:
        x = np.zeros(shape + (1,), np.int32)
    return net, x, None if bias is None else np.load(gts / bias)
