"""Fuzzing the loaders at the edges with hypothesis: netx files, the dataset formats
(Fashion-MNIST IDX, N-MNIST events, SHD HDF5), npy/npz inputs and labels, and YAML
configurations, fed random bytes, truncations, flipped bytes, wrong dtypes and
shapes, missing keys.

The only allowed outcomes are a correct result or one of the documented errors (a
:class:`~neurodeploy.errors.NeurodeployError`); anything else fails the test.
Bounded for CI: ``NEURODEPLOY_FUZZ_EXAMPLES`` examples per test (default 25).
"""
from __future__ import annotations

import gzip
import io
import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data import SHD_TEST, SHD_TRAIN, write_fashion, write_nmnist, write_shd

from neurodeploy import checks
from neurodeploy.config import RunConfig, load_config
from neurodeploy.errors import NeurodeployError
from neurodeploy.export.netx import write_netx
from neurodeploy.network import CubaNeuron, Dense, Input, Network, SigmaDeltaNeuron

FUZZ = settings(max_examples=int(os.environ.get("NEURODEPLOY_FUZZ_EXAMPLES", "25")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                derandomize=os.environ.get("NEURODEPLOY_FUZZ_RANDOM") != "1")


def _dense_net() -> Network:
    rng = np.random.default_rng(0)
    n = CubaNeuron(current_decay=1024, voltage_decay=128, threshold=60)
    return Network(layers=(Dense(weight=2 * rng.integers(-20, 60, (5, 4)), neuron=n),
                           Dense(weight=2 * rng.integers(-20, 60, (3, 5)), neuron=n)), input_shape=(4,))


def _sdnn_net() -> Network:
    rng = np.random.default_rng(1)
    sd = SigmaDeltaNeuron(threshold=8)
    return Network(layers=(Input(shape=(4,), neuron=sd), Dense(weight=2 * rng.integers(-60, 60, (3, 4)), neuron=sd)),
                   input_shape=(4,))


class Files(list):
    """File contents, with a short repr for hypothesis's failure reports."""

    def __repr__(self):
        return f"<{len(self)} files>"


@pytest.fixture(scope="module")
def valid_nets(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_nets")
    out = Files()
    for name, net in (("dense", _dense_net()), ("sdnn", _sdnn_net())):
        write_netx(net, d / f"{name}.net")
        out.append((d / f"{name}.net").read_bytes())
    return out


def mutate(data: bytes, draw) -> bytes:
    """Truncate, flip bytes, splice random bytes, or replace everything."""
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "random"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "random":
        return draw(st.binary(max_size=2048))
    b = bytearray(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] = draw(st.integers(0, 255))
        return bytes(b)
    i = draw(st.integers(0, len(b)))
    return bytes(b[:i]) + draw(st.binary(min_size=1, max_size=64)) + bytes(b[i:])


def only_documented_errors(fn, *args, **kwargs):
    """fn's result, or None when it raised a documented error; anything else fails."""
    try:
        return fn(*args, **kwargs)
    except NeurodeployError as e:
        msg = str(e)
        assert msg and "\n" not in msg.strip(), repr(msg)  # one line, never empty
        return None


# --- netx files ------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_netx_bytes_load_or_fail_with_a_documented_error(valid_nets, data):
    raw = mutate(data.draw(st.sampled_from(valid_nets)), data.draw)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.net"
        p.write_bytes(raw)
        net = only_documented_errors(checks.load_network, p)
        if net is not None:  # a correct result: it runs on the simulator, or says why not
            from neurodeploy.sim.simulator import simulate
            x = np.zeros((1, *net.input_shape[::-1], 3), np.int8)
            try:
                only_documented_errors(simulate, net, x)
            except NotImplementedError:
                pass


FIELDS = ["layer/0/weight", "layer/0/type", "layer/0/neuron/vThMant", "layer/0/neuron/iDecay",
          "layer/0/neuron/type", "layer/1/weight", "layer/1/shape", "layer/0/neuron", "layer/1", "layer"]
VALUES = st.one_of(
    st.just(b"dense"), st.just(b"nonsense"), st.floats(allow_nan=True), st.integers(-2 ** 40, 2 ** 40),
    st.builds(lambda s: np.zeros(s), st.lists(st.integers(0, 3), max_size=4).map(tuple)),
    st.builds(lambda s: np.full(s, 0.5), st.lists(st.integers(1, 3), max_size=3).map(tuple)),
    st.just(np.array([b"CUBA"])), st.just(np.array([300, 301])), st.none())


@FUZZ
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_netx_missing_or_ill_typed_fields_are_documented_errors(valid_nets, field, value):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.net"
        p.write_bytes(valid_nets[0])
        with h5py.File(p, "r+") as f:
            if field in f:
                del f[field]
            if value is not None:
                f.create_dataset(field, data=value)
        net = only_documented_errors(checks.load_network, p)
        if net is not None:
            from neurodeploy.sim.simulator import simulate
            only_documented_errors(simulate, net, np.zeros((1, *net.input_shape[::-1], 3), np.int8))


# --- npy / npz inputs and labels -------------------------------------------------------
DTYPES = st.sampled_from(["int8", "int16", "int32", "int64", "uint8", "uint64", "float16", "float32",
                          "float64", "bool", "complex64", "U3", "S2"])


@st.composite
def arrays(draw):
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=4)))
    dtype = np.dtype(draw(DTYPES))
    n = int(np.prod(shape))
    if dtype.kind in "US":
        return np.array(["ab"] * n, dtype=dtype).reshape(shape)
    vals = draw(st.lists(st.one_of(st.integers(-3, 3), st.sampled_from([0.5, np.nan, np.inf, 2.0 ** 40])),
                         min_size=n, max_size=n))
    with np.errstate(all="ignore"):
        return np.array(vals, dtype=np.float64).astype(dtype).reshape(shape)


@FUZZ
@given(x=arrays(), y=st.one_of(st.none(), arrays()), key=st.sampled_from(["inputs", "spikes"]))
def test_npz_samples_are_checked_or_refused(x, y, key):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "d.npz"
        arrays_ = {key: x} if y is None else {key: x, "labels": y}
        np.savez(p, **arrays_)
        got = only_documented_errors(checks.load_samples, p)
        if got is None:
            return
        inputs, labels = got
        checked = only_documented_errors(checks.check_inputs, inputs, (4,), "inputs")
        if checked is None:
            return
        # a correct result: integers of the right shape, equal to what was given
        assert checked.dtype.kind in "iu" and checked.shape[1:-1] == (4,) and checked.shape[0] >= 1
        assert np.array_equal(checked, x)
        lab = only_documented_errors(checks.check_labels, labels, checked.shape[0], 3, "labels")
        if lab is not None:
            assert lab.dtype == np.int64 and lab.shape == (checked.shape[0],)
            assert lab.min() >= 0 and lab.max() < 3 and np.array_equal(lab, np.asarray(labels).reshape(-1))


@FUZZ
@given(data=st.data())
def test_npy_and_npz_bytes_load_or_fail_with_a_documented_error(data):
    buf = io.BytesIO()
    if data.draw(st.booleans()):
        np.save(buf, np.ones((2, 4, 3), np.int8))
    else:
        np.savez_compressed(buf, inputs=np.ones((2, 4, 3), np.int8), labels=np.array([0, 1]))
    raw = mutate(buf.getvalue(), data.draw)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.npy"
        p.write_bytes(raw)
        arr = only_documented_errors(checks.load_array, p, "--input")
        if arr is not None:
            only_documented_errors(checks.check_inputs, arr, (4,), "--input", order="netx")
        got = only_documented_errors(checks.load_samples, p)
        if got is not None:
            only_documented_errors(checks.check_inputs, got[0], (4,), "--data")


# --- configuration files ---------------------------------------------------------------
KEYS = st.sampled_from(["name", "seed", "data", "model", "train", "lava", "hardware", "name2", "epochs",
                        "hidden", "steps", "limit", "dir", "lr", "neuron", "threshold", "backward", "samples"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10 ** 6), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["digits", "sparse", "dense", "rate", "shd"]))
TREES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)


@FUZZ
@given(tree=TREES)
def test_config_structures_validate_or_fail_with_a_documented_error(tree):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.yaml"
        p.write_text(yaml.safe_dump(tree))
        cfg = only_documented_errors(load_config, p)
        assert cfg is None or isinstance(cfg, RunConfig)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=512), st.text(max_size=512).map(lambda s: s.encode("utf-8", "replace"))))
def test_config_bytes_validate_or_fail_with_a_documented_error(raw):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.yaml"
        p.write_bytes(raw)
        cfg = only_documented_errors(load_config, p)
        assert cfg is None or isinstance(cfg, RunConfig)


# --- dataset formats ---------------------------------------------------------------------
def _load_and_encode(spec):
    from neurodeploy.data import load_dataset

    train, test = load_dataset(spec)
    for ds in (train, test):
        if len(ds):
            out = ds.encode(np.arange(min(2, len(ds))))
            assert out.shape[1:] == (spec.steps, *ds.input_shape) and np.all(np.isfinite(out))
    return train, test


@pytest.fixture(scope="module")
def fashion_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fashion")
    write_fashion(d, n_train=3, n_test=2)
    return {p.name: p.read_bytes() for p in d.iterdir()}


@FUZZ
@given(data=st.data())
def test_fashion_mnist_idx_files_load_or_fail_with_a_documented_error(fashion_files, data):
    from neurodeploy.data import DataSpec

    name = data.draw(st.sampled_from(sorted(fashion_files)))
    raw = fashion_files[name]
    if data.draw(st.booleans()):  # damage the IDX content inside a valid gzip stream
        raw = gzip.compress(mutate(gzip.decompress(raw), data.draw))
    else:
        raw = mutate(raw, data.draw)
    with tempfile.TemporaryDirectory() as d:
        for n, b in fashion_files.items():
            (Path(d) / n).write_bytes(raw if n == name else b)
        only_documented_errors(_load_and_encode, DataSpec(name="fashion_mnist", dir=d, steps=4))


@FUZZ
@given(raw=st.binary(max_size=64), cls=st.integers(0, 9))
def test_nmnist_event_files_load_or_fail_with_a_documented_error(raw, cls):
    from neurodeploy.data import DataSpec

    with tempfile.TemporaryDirectory() as d:
        write_nmnist(Path(d), per_class=(1, 1))
        (Path(d) / "Test" / str(cls) / "00000.bin").write_bytes(raw)
        got = only_documented_errors(_load_and_encode, DataSpec(name="nmnist", dir=d, steps=4, window=1e5))
        if got is not None:
            test = got[1]
            only_documented_errors(test.encode, np.arange(len(test)))


@FUZZ
@given(data=st.data())
def test_shd_hdf5_files_load_or_fail_with_a_documented_error(data):
    from neurodeploy.data import DataSpec

    with tempfile.TemporaryDirectory() as d:
        write_shd(Path(d) / "shd_train.h5", SHD_TRAIN, [19, 0, 5, 7])
        write_shd(Path(d) / "shd_test.h5", SHD_TEST, [3, 12], time_dtype=np.float32)
        p = Path(d) / data.draw(st.sampled_from(["shd_train.h5", "shd_test.h5"]))
        if data.draw(st.booleans()):
            p.write_bytes(mutate(p.read_bytes(), data.draw))
        else:
            key = data.draw(st.sampled_from(["labels", "spikes/times", "spikes/units", "spikes"]))
            with h5py.File(p, "r+") as f:
                del f[key]
                value = data.draw(st.one_of(st.none(), st.just(np.array([1.5, -2.0])),
                                            st.just(np.array([b"x"])), st.just(np.zeros((2, 3)))))
                if value is not None and key != "spikes":
                    f.create_dataset(key, data=value)
        got = only_documented_errors(_load_and_encode, DataSpec(name="shd", dir=d, steps=4, window=1.0))
        if got is not None:
            for ds in got:
                only_documented_errors(ds.encode, np.arange(len(ds)))
