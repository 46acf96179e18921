"""The simulator on CUDA (neurodeploy.sim.cuda, sim.triton_neurons) against the CPU
simulator, whose spikes are tested against Lava's fixed-point models elsewhere.

Without a GPU the Triton kernels run under Triton's interpreter on CPU tensors, and
the device path (products, frames, timeline) on CPU tensors: the same code, checked
against the CPU simulator's compiled loops. ``-m cuda`` tests compare the GPU with the
CPU simulator on every network of benchmarks/sim_speed.py and lava-dl's netx test files.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_networks import NETX_FILES, SMALL_NETWORKS, netx_file_case

from neurodeploy import fixedpoint as fx
from neurodeploy.export.netx import read_netx, write_netx
from neurodeploy.lava_adapter import lava_dl_test_data
from neurodeploy.network import CubaNeuron, Dense, Network
from neurodeploy.sim.simulator import simulate

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:  # kernels imported with this set run in Triton's interpreter (which
    # reads it again while running them: it stays set for this process, GPU-less)
    os.environ["TRITON_INTERPRET"] = "1"
tn = pytest.importorskip("neurodeploy.sim.triton_neurons", reason="Triton is not installed")
from neurodeploy.sim import cuda as simcuda  # noqa: E402

#: where the kernels and the device path run in this session
DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")
ROOT = Path(__file__).resolve().parents[1]
GTS = lava_dl_test_data()
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")

fields = st.integers(1, 4096), st.integers(0, 4095), st.integers(0, 4000)


@st.composite
def cuba_cases(draw):
    steps, n = draw(st.integers(1, 6)), draw(st.integers(1, 70))
    m = draw(st.sampled_from([1] + [d for d in (2, 5, 7) if n % d == 0]))
    values = [tuple(draw(f) for _ in range(m)) if m > 1 and draw(st.booleans()) else draw(f) for f in fields]
    top = draw(st.sampled_from([1, 300, 1 << 17, 1 << 24]))  # 1 << 24: u leaves 24 bits
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    a = rng.integers(-top, top + 1, (steps, n))
    bias = rng.integers(-4096, 4096, n) if draw(st.booleans()) else None
    reset = rng.random(steps) < 0.3
    u0 = rng.integers(-(1 << 23) + 1, 1 << 23, n)
    v0 = rng.integers(-(1 << 23) + 1, 1 << 23, n)
    first = rng.integers(-top, top + 1, n) if draw(st.booleans()) else None
    return a, fx.CubaParameters(*values), bias, reset, u0, v0, first


@settings(max_examples=60, deadline=None)
@given(cuba_cases())
def test_cuba_kernel_equals_the_cpu_simulators_compiled_step(case):
    a, p, bias, reset, u0, v0, first = case
    steps, n = a.shape
    spikes, (u, v), u_rec, v_rec = fx.cuba_run(a, p, bias, reset, state=(u0.copy(), v0.copy()),
                                               record=True, a_first=first)
    d = dict(device=DEVICE)
    tu, tv = torch.tensor(u0, **d), torch.tensor(v0, **d)
    s = torch.empty((steps, n), dtype=torch.int8, **d)
    tur, tvr = (torch.empty((steps, n), dtype=torch.int64, **d) for _ in range(2))
    tn.cuba_steps(torch.tensor(a, dtype=torch.int32, **d), tn.cuba_parameters(p, DEVICE),
                  None if bias is None else torch.tensor(bias, **d),
                  torch.tensor(reset.astype(np.int8), **d), tu, tv, s,
                  None if first is None else torch.tensor(first, dtype=torch.int32, **d), tur, tvr)
    assert np.array_equal(s.cpu().numpy(), spikes)
    assert np.array_equal(tur.cpu().numpy(), u_rec) and np.array_equal(tvr.cpu().numpy(), v_rec)
    assert np.array_equal(tu.cpu().numpy(), u) and np.array_equal(tv.cpu().numpy(), v)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([fx.SD_HIDDEN, fx.SD_INPUT, fx.SD_SIGMA_OUTPUT]), st.integers(1, 5),
       st.integers(1, 50), st.sampled_from([10, 1 << 12, 1 << 20, 1 << 30]), st.integers(0, 3000),
       st.booleans(), st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_sigma_delta_kernel_equals_the_cpu_simulators_compiled_step(kind, steps, n, top, threshold,
                                                                    has_bias, delayed, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-top, top + 1, (steps, n))
    bias = rng.integers(-4096, 4096, n) if has_bias and kind == fx.SD_HIDDEN else None
    regs = [rng.integers(-(1 << 31), 1 << 31, n) for _ in range(3)]
    first = rng.integers(-top, top + 1, n) if delayed else None
    out = np.empty((steps, n), np.int64)
    host = [r.copy() for r in regs]
    sigma_rec = fx.sigma_delta_run(a, kind, threshold, bias, tuple(host), out, a_first=first, record=True)
    d = dict(device=DEVICE)
    dev = [torch.tensor(r, **d) for r in regs]
    t_out = torch.empty((steps, n), dtype=torch.int64, **d)
    t_rec = torch.empty((steps, n), dtype=torch.int64, **d)
    tn.sigma_delta_steps(torch.tensor(a, **d), kind, threshold, None if bias is None else torch.tensor(bias, **d),
                         *dev, t_out, None if first is None else torch.tensor(first, **d), t_rec)
    assert np.array_equal(t_out.cpu().numpy(), out)
    assert np.array_equal(t_rec.cpu().numpy(), sigma_rec)
    assert all(np.array_equal(t.cpu().numpy(), h) for t, h in zip(dev, host))


def test_products_beyond_float64_go_through_digits_exactly():
    """A synapse whose sums may reach 2**53 splits its input into digits; the product
    equals the int64 one, carries and the signed top digit included."""
    rng = np.random.default_rng(3)
    host = simcuda.Synapse(0, Dense(weight=2 * rng.integers(-128, 128, (6, 40)),
                                         neuron=CubaNeuron(4096, 0, 0)), True, (40,), 1.0)
    syn = simcuda._DeviceSynapse(host, torch.device("cpu"), 2.0 ** 31)
    syn.digit_bits = 7  # as for a far larger row sum: five digits for 31-bit inputs
    x = torch.from_numpy(rng.integers(-(1 << 31), 1 << 31, (2, 3, 40)))
    w = syn.weights[0][1]
    assert torch.equal(syn._exact(lambda d: d @ w.T, x), x @ w.to(torch.int64).T)




@pytest.mark.parametrize("name,net,density,bias", SMALL_NETWORKS, ids=[c[0] for c in SMALL_NETWORKS])
def test_device_path_gives_the_cpu_simulators_spikes_and_states(name, net, density, bias):
    """Every block kind, with resets, records and chunks that split the run, through
    the device path (on the GPU when there is one, else on CPU tensors)."""
    rng = np.random.default_rng(11)
    feed = tuple(net.input_shape[::-1])
    x = (rng.integers(-density, density + 1, (3,) + feed + (9,)) if density >= 1
         else (rng.random((3,) + feed + (9,)) < density).astype(np.int8))
    kw = dict(steps=13, reset_interval=6, reset_offset=1, record=True, input_bias=bias)
    ref = simulate(net, x, **kw)
    got = simcuda.simulate_on(DEVICE, net, x, chunk_steps=4, **kw)
    assert ref.spikes.any()
    assert np.array_equal(got.spikes, ref.spikes)
    assert sorted(got.records) == sorted(ref.records)
    for key in ref.records:
        assert np.array_equal(got.records[key], ref.records[key]), key


def test_device_inputs_are_checked_like_the_cpu_simulators():
    net = Network(layers=(Dense(weight=np.ones((2, 3), np.int64), neuron=CubaNeuron(4096, 0, 0)),),
                  input_shape=(3,))
    for bad, words in ((np.zeros((4, 2, 5)), "shape"), (np.full((3, 5), 0.5), "integers"),
                       (np.full((3, 5), 2 ** 31), "int32")):
        with pytest.raises(simcuda.SimulationInputError, match=words):
            simcuda.simulate_on(DEVICE, net, bad)


@pytest.mark.skipif(HAS_CUDA, reason="checks the machine without a GPU")
def test_simulate_on_cuda_without_a_gpu_is_one_line_and_exit_6(tmp_path):
    net = Network(layers=(Dense(weight=np.ones((2, 3), np.int64), neuron=CubaNeuron(4096, 0, 0)),),
                  input_shape=(3,))
    path = write_netx(net, tmp_path / "n.net")
    np.save(tmp_path / "x.npy", np.zeros((3, 5), np.int8))
    done = subprocess.run([sys.executable, "-m", "neurodeploy", "simulate", str(path), "--input",
                           str(tmp_path / "x.npy"), "--output", str(tmp_path / "o.npz"), "--device", "cuda"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 6, done.stderr
    lines = [l for l in done.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "no CUDA GPU" in lines[0] and "Traceback" not in done.stderr


# ------------------------------------------------------------------ on a GPU only
def _benchmark_networks():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sim_speed
    rng = np.random.default_rng(0)
    return [sim_speed.dense_net([100, 50, 10], rng), sim_speed.dense_net([784, 512, 512, 10], rng),
            sim_speed.conv_net(rng), sim_speed.sparse_net(rng), sim_speed.recurrent_net(rng)]


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("index", range(5))
def test_gpu_spikes_equal_the_cpu_simulators_on_the_benchmark_networks(index, tmp_path):
    net = read_netx(write_netx(_benchmark_networks()[index], tmp_path / "n.net"))
    rng = np.random.default_rng(index)
    feed = tuple(net.input_shape[::-1])
    x = (rng.random((96,) + feed + (300,)) < (0.03 if index >= 3 else 0.2)).astype(np.int8)
    ref = simulate(net, x)
    got = simulate(net, x, device="cuda")
    assert ref.spikes.sum() > 0 and np.array_equal(got.spikes, ref.spikes)
    rec_ref = simulate(net, x[:4], steps=40, record=True)
    rec_got = simulate(net, torch.from_numpy(x[:4]).cuda(), steps=40, record=True, device="cuda")
    assert all(np.array_equal(rec_got.records[k], v) for k, v in rec_ref.records.items())




@pytest.mark.cuda
@needs_gpu
@pytest.mark.skipif(GTS is None, reason="lava-dl's netx test files are not installed")
@pytest.mark.parametrize("name,blocks,steps,reset,inp,bias", NETX_FILES, ids=[f[0] for f in NETX_FILES])
def test_gpu_equals_the_cpu_simulator_on_lava_dls_netx_files(name, blocks, steps, reset, inp, bias):
    net, x, input_bias = netx_file_case(
        GTS, name, blocks, inp, bias,
        lambda shape: (np.random.default_rng(0).random(shape + (10,)) < 0.2).astype(np.int8))
    kw = dict(steps=steps, reset_interval=reset, record=True, input_bias=input_bias)
    ref = simulate(net, x, **kw)
    got = simulate(net, x, device="cuda", **kw)
    assert np.array_equal(got.spikes, ref.spikes)
    for key, v in ref.records.items():
        assert np.array_equal(got.records[key], v), key
