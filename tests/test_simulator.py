"""The bit-accurate simulator: chunking, cyclic input, and the compiled neuron loop
against the torch step (Lava comparisons: test_sim_lava.py)."""
import numpy as np
import pytest
import torch

from neurodeploy import fixedpoint as fx
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


@pytest.mark.parametrize("binary,steps_in", [(True, 7), (False, 7), (True, 16)])
def test_input_chunks_reorder_netx_order_to_torch_order(monkeypatch, binary, steps_in):
    """(B, x, y, c, T) netx order -> (steps, B, y, x, c), the order the simulator holds
    images in (channels_last), cyclic beyond T, the compiled reordering (per element,
    or by 8 x 8 byte blocks for 1-byte input and T a multiple of 8) and its torch
    fallback alike."""
    from neurodeploy.sim import frames as simframes
    rng = np.random.default_rng(4)
    shape = (3, 5, 4, 2, steps_in)
    src = (rng.random(shape) < 0.4).astype(np.int8) if binary else rng.integers(-300, 300, shape)
    expect = torch.from_numpy(src).permute(4, 0, 2, 1, 3)[np.arange(8, 43) % steps_in]
    for compiled in (True, False):
        if not compiled:
            monkeypatch.setattr(simframes, "_compiled_frames", lambda: None)
        frames = simframes.InputFrames(src, (5, 4, 2), (2, 4, 5), binary)
        assert (frames.src64 is not None) == (binary and steps_in % 8 == 0)
        got = frames.chunk(8, 35)
        assert got.dtype == (torch.bool if binary else torch.int64)
        assert torch.equal(got.to(torch.int64), expect.reshape(35, 3, -1).to(torch.int64)), compiled


@pytest.mark.parametrize("steps_in,features", [(24, 40), (21, 40), (24, 43)])
def test_input_read_ahead_and_byte_block_reordering(monkeypatch, steps_in, features):
    """1-d binary input (the 8 x 8 byte-block path when T is a multiple of 8, the
    per-element path otherwise and for the features after the last whole 8):
    successive chunks of odd sizes, served from the read-ahead buffer, wrapping
    cyclically beyond T, equal the input in torch order."""
    from neurodeploy.sim import frames as simframes
    monkeypatch.setattr(simframes, "READ_AHEAD_STEPS", 16)
    rng = np.random.default_rng(5)
    src = (rng.random((3, features, steps_in)) < 0.4).astype(np.int8)
    frames = simframes.InputFrames(src, (features,), (features,), True)
    frames.buffer = torch.ones((64, 3, features), dtype=torch.int8)  # unwritten bytes show
    assert (frames.src64 is not None) == (steps_in % 8 == 0)
    start = 0
    for c in (5, 8, 3, 16, 13, 8, 30, 1):
        got = frames.chunk(start, c)
        expect = src[:, :, np.arange(start, start + c) % steps_in].transpose(2, 0, 1)
        assert np.array_equal(got.numpy().view(np.int8), expect), (start, c)
        start += c


def test_compiled_and_torch_neuron_paths_agree_on_a_conv_network(monkeypatch):
    """Conv synapses (exact float32 products) into CUBA layers, chunked, with resets and
    records: the compiled neuron loop and the torch step give the same u, v and spikes."""
    from neurodeploy.network import Conv, Flatten, Input
    rng = np.random.default_rng(7)
    c1 = Conv(weight=2 * rng.integers(-40, 40, (4, 2, 3, 3)), neuron=CubaNeuron(1024, 256, 30),
              shape=(4, 3, 3), stride=(2, 2))
    d = Dense(weight=2 * rng.integers(-40, 40, (5, 36)), neuron=CubaNeuron(3000, 100, 40))
    net = Network((Input(shape=(2, 8, 8), neuron=CubaNeuron(4096, 0, 0)), c1,
                   Flatten(shape=(36,)), d), (2, 8, 8))
    x = (rng.random((3, 8, 8, 2, 11)) < 0.4).astype(np.int8)
    kw = dict(steps=30, reset_interval=9, record=True, chunk_steps=4)
    compiled = simulate(net, x, **kw)
    monkeypatch.setattr(fx, "compiled_cuba_steps", lambda: None)
    plain = simulate(net, x, **kw)
    assert compiled.spikes.sum() > 0 and compiled.records["s/1"].sum() > 0
    assert np.array_equal(compiled.spikes, plain.spikes)
    for key in compiled.records:
        assert np.array_equal(compiled.records[key], plain.records[key]), key


@pytest.mark.parametrize("weight_scale", [40, 120])  # int8 recurrent weights, and wider
def test_compiled_and_torch_neuron_paths_agree_on_a_recurrent_network(monkeypatch, weight_scale):
    """A dense_rec layer (the compiled loop a step at a time, W_rec of the previous
    step's spikes added) over chunks of 3 steps, with resets, a bias, a batch and
    records, gives the same u, v and spikes as the torch step. (Lava itself checks
    the recurrent arithmetic in test_sim_lava.)"""
    rng = np.random.default_rng(11)
    w = 2 * rng.integers(-weight_scale, weight_scale, (16, 10))
    wr = 2 * rng.integers(-weight_scale, weight_scale, (16, 16))
    net = Network((Dense(weight=w, weight_rec=wr, bias=rng.integers(-30, 30, 16),
                         neuron=CubaNeuron(900, 300, 60)),
                   Dense(weight=2 * rng.integers(-40, 40, (4, 16)), neuron=CubaNeuron(2000, 100, 40))),
                  (10,))
    x = (rng.random((5, 10, 13)) < 0.3).astype(np.int8)
    kw = dict(steps=40, reset_interval=11, record=True, chunk_steps=3)
    compiled = simulate(net, x, **kw)
    monkeypatch.setattr(fx, "compiled_cuba_steps", lambda: None)
    plain = simulate(net, x, **kw)
    assert 0.02 < compiled.records["s/0"].mean() < 0.9 and compiled.spikes.sum() > 0
    assert np.array_equal(compiled.spikes, plain.spikes)
    for key in compiled.records:
        assert np.array_equal(compiled.records[key], plain.records[key]), key


def test_compiled_and_torch_sigma_delta_paths_agree(monkeypatch):
    """Sigma-delta input, hidden (bias, ReLU) and sigma-output layers, graded input,
    chunks of 3 steps (each chunk's first step from the previous one's last products):
    the compiled loop and the torch steps give the same messages and sigma records.
    (Lava checks the arithmetic itself in test_sim_lava.)"""
    from neurodeploy.network import Input, SigmaDeltaNeuron
    rng = np.random.default_rng(12)
    net = Network((Input(shape=(6,), neuron=SigmaDeltaNeuron(threshold=2)),
                   Dense(weight=2 * rng.integers(-60, 60, (9, 6)), bias=rng.integers(-20, 20, 9),
                         neuron=SigmaDeltaNeuron(threshold=40)),
                   Dense(weight=2 * rng.integers(-60, 60, (3, 9)), neuron=SigmaDeltaNeuron(0, sigma_output=True))),
                  (6,))
    x = rng.integers(-300, 300, (4, 6, 17))
    kw = dict(steps=25, record=True, chunk_steps=3)
    compiled = simulate(net, x, **kw)
    monkeypatch.setattr(fx, "compiled_sigma_delta_steps", lambda: None)
    plain = simulate(net, x, **kw)
    assert np.count_nonzero(compiled.records["s/1"]) > 20 and np.any(compiled.records["s/1"] == 0)
    assert np.array_equal(compiled.spikes, plain.spikes)
    for key in compiled.records:
        assert np.array_equal(compiled.records[key], plain.records[key]), key


@pytest.mark.filterwarnings("ignore::neurodeploy.sim.simulator.LavaConvOverflowWarning")
@pytest.mark.parametrize("groups,top", [(1, 2 ** 24 - 1), (2, 2 ** 31), (1, 300), (2, 1)])
def test_graded_conv_as_float32_digits_is_exact(groups, top):
    """A conv of graded input that needs float64 runs as one float32 conv of the
    input's base-2**p digits: the same values as the float64 conv, for inputs that
    take one digit (small), two (24-bit) and three (31-bit), at +-top exactly, with the
    largest weight row sum the 8-bit weights allow."""
    from neurodeploy.network import Conv, SigmaDeltaNeuron
    from neurodeploy.sim import products
    rng = np.random.default_rng(13)
    w = 2 * rng.integers(-127, 128, (4, 4 // groups, 3, 3))
    w[0] = 254
    block = Conv(weight=w, neuron=SigmaDeltaNeuron(1), shape=(4, 3, 4), stride=(2, 2),
                 padding=(1, 1), groups=groups)
    syn = products.Synapse(1, block, True, (4, 6, 7), float(2 ** 31))
    assert syn.dtype == torch.float64 and syn.split_bits >= products.SPLIT_MIN_BITS
    x = torch.from_numpy(rng.integers(-top, top + 1, (5, 3, 4 * 6 * 7)))
    x[0, 0, :6] = torch.tensor([-top, top, -top, top, 0, -1])
    split = syn(x, 5)
    syn.split_bits = 0  # the float64 conv (exact: |W x| < 2**53)
    plain = syn(x, 5)
    assert split.shape == plain.shape == (5, 3, 4 * 3 * 4)
    assert torch.equal(split.to(torch.int64), plain.to(torch.int64))
    assert plain.abs().max() > (2 ** 20 if top > 2 ** 20 else 0)


def test_event_driven_product_equals_the_int8_gemm(monkeypatch):
    """Sparse binary inputs (1 %): the event-driven synapse (sum of the active inputs'
    weight rows) gives the same u, v and spikes as the int8 GEMM; widths with and
    without whole 8-byte words."""
    from neurodeploy.sim import products
    rng = np.random.default_rng(8)
    original = products._event_product
    for n_in in (96, 101):
        net = _net(rng, [n_in, 40, 7], neuron=CubaNeuron(2000, 200, 3), weight_scale=35.0)
        x = (rng.random((6, n_in, 50)) < 0.01).astype(np.int8)
        calls = []

        def counted(rows, w):
            out = original(rows, w)
            calls.append(out is not None)
            return out

        monkeypatch.setattr(products, "_event_product", counted)
        monkeypatch.setattr(products, "_events_win", lambda d, k, n: True)   # always
        monkeypatch.setattr(products, "EVENT_GROUP", 5)   # int16 sums flushed often
        event = simulate(net, x, record=True)
        assert calls and all(calls)
        monkeypatch.setattr(products, "_events_win", lambda d, k, n: False)   # never
        gemm = simulate(net, x, record=True)
        assert event.records["s/0"].sum() > 0
        for key in gemm.records:
            assert np.array_equal(event.records[key], gemm.records[key]), (n_in, key)
        assert np.array_equal(event.spikes, gemm.spikes)


def test_event_driven_product_sums_beyond_int16():
    """Rows with hundreds of events of extreme weights (-128, 127): the int16 partial
    sums are flushed before they overflow, so the product equals the int8 GEMM."""
    from neurodeploy.sim import products
    rng = np.random.default_rng(3)
    k, n = 600, 48
    w = np.where(rng.random((k, n)) < 0.5, -128, 127).astype(np.int8)
    w[:, 0], w[:, 1] = -128, 127
    rows = (rng.random((9, k)) < 0.9).astype(np.int8)
    rows[0] = 1
    kernel = products._compiled_event_loops()
    if kernel is None:
        pytest.skip("numba missing: no event-driven product")
    out = np.empty((9, n), np.int32)
    kernel(rows, rows.view(np.uint64), w, out, products.EVENT_GROUP)
    expected = rows.astype(np.int64) @ w.astype(np.int64)
    assert expected[0, 0] == -128 * k and abs(expected).max() > 2 ** 15
    assert np.array_equal(out, expected)
    assert products._events_win(0.05, 784, 512) and not products._events_win(0.01, 512, 10)


def test_classify_takes_the_neuron_with_most_spikes_ties_to_the_lowest_index():
    """One decoding for every command: output messages (samples, *out_shape, T) summed
    over time, argmax over the neurons of each sample, ties to the lowest index; uint8
    spikes counted beyond 255, graded messages with their signs."""
    from neurodeploy.sim.samples import classify
    spikes = np.zeros((3, 2, 2, 300), np.uint8)
    spikes[0, 1, 0, :] = 1          # neuron 2 of (2, 2) fires at every step
    spikes[0, 0, 1, :256] = 1       # neuron 1 fires 256 times (255 + 1: no uint8 wrap)
    spikes[1, 0, 1, :5] = 1         # tie between neurons 1 and 3
    spikes[1, 1, 1, 10:15] = 1
    assert classify(spikes).tolist() == [2, 1, 0]   # sample 2: all silent -> 0
    graded = np.array([[[5, -9], [-1, 0], [2, 1]]])  # (1, 3 neurons, 2 steps)
    assert classify(graded).tolist() == [2]


def test_reset_phase_follows_netx_layer_offsets():
    """Neuron layer i resets at Lava steps t (from 1) with t % R == (offset + 1 + i) % R:
    with the sample stream's P - 1 leading zero steps, layer i starts sample k at step
    (k + 1) P + 1 + i from a fresh state."""
    from neurodeploy.sim.samples import reset_phase
    p = 7
    for i in range(4):
        starts = [t for t in range(1, 40) if t % p == reset_phase(i, p)]
        assert starts == [t for t in range(1, 40) if (t - 1 - i) % p == 0]
    assert reset_phase(2, 5, reset_offset=3) == 1
