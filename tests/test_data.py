"""Dataset loaders: tiny files written byte by byte in each published format, decoded
values and encodings checked exactly; errors on missing and malformed files."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from neurodeploy.data import TRAIN, DatasetError, DataSpec, SpikeDataset, load_dataset, per_sample_rng, select_limit
from neurodeploy.data.encoding import bin_events, latency_encode, rate_encode

FASHION_URL = "https://github.com/zalandoresearch/fashion-mnist"
NMNIST_URL = "https://www.garrickorchard.com/datasets/n-mnist"
SHD_URL = "https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/"


# ---------------------------------------------------------------- encodings

def test_latency_code_fires_once_at_rounded_step_and_never_for_zero():
    x = np.array([[1.0, 0.5, 0.25, 0.75, 0.0, 0.1]], dtype=np.float32)
    s = latency_encode(x, 11)
    assert s.shape == (1, 11, 6) and s.dtype == np.float32
    # (1 - x) * 10 = 0, 5, 7.5 -> 8 (ties to even), 2.5 -> 2, (no spike), 9
    expected = {0: 0, 1: 5, 2: 8, 3: 2, 5: 9}
    for pixel in range(6):
        fired = np.flatnonzero(s[0, :, pixel])
        assert list(fired) == ([expected[pixel]] if pixel in expected else []), pixel


def test_rate_code_is_bernoulli_with_pixel_probability_and_seeded():
    x = np.array([[0.0, 1.0, 0.3]], dtype=np.float32)
    s = rate_encode(x, 20000, np.random.default_rng(1))
    assert s[0, :, 0].sum() == 0 and s[0, :, 1].sum() == 20000
    assert abs(s[0, :, 2].mean() - 0.3) < 0.015
    assert set(np.unique(s)) == {0.0, 1.0}
    again = rate_encode(x, 20000, np.random.default_rng(1))
    assert np.array_equal(s, again)
    assert not np.array_equal(s, rate_encode(x, 20000, np.random.default_rng(2)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rate_encode(np.array([[1.5]]), 3, np.random.default_rng(0))


def test_bin_events_bins_by_floor_drops_outside_window_and_clips_or_counts():
    times = np.array([0, 24, 25, 99, 100, -1, 30])
    units = np.array([0, 1, 0, 2, 1, 0, 0])
    # window 100 over 4 steps: bins [0, 25) [25, 50) [50, 75) [75, 100)
    expected = np.zeros((4, 3), np.float32)
    expected[0, 0] = expected[0, 1] = expected[1, 0] = expected[3, 2] = 1
    assert np.array_equal(bin_events(times, units, 3, 4, 100), expected)
    counts = expected.copy()
    counts[1, 0] = 2  # t=25 and t=30 on unit 0
    assert np.array_equal(bin_events(times, units, 3, 4, 100, counts=True), counts)
    row = np.zeros((2, 4, 3), np.float32)  # a batch; bin into row 1 in place
    target = row[1]
    assert bin_events(times, units, 3, 4, 100, out=target) is target
    assert np.array_equal(row[1], expected) and not row[0].any()
    with pytest.raises(ValueError, match="units"):
        bin_events([1.0], [3], 3, 4, 100)


# ---------------------------------------------------------------- digits

def test_digits_split_is_stratified_seeded_and_reproducible():
    from sklearn.datasets import load_digits

    train, test = load_dataset(DataSpec(name="digits", seed=3))
    assert (len(train), len(test)) == (1437, 360)
    assert train.input_shape == (64,) and train.num_classes == 10
    full = np.bincount(load_digits().target, minlength=10)
    assert np.array_equal(np.bincount(train.labels, minlength=10) + np.bincount(test.labels, minlength=10), full)
    # stratified: every class's test share is within one sample of 20 %
    assert np.all(np.abs(np.bincount(test.labels, minlength=10) - 0.2 * full) <= 1)
    train2, test2 = load_dataset(DataSpec(name="digits", seed=3))
    assert np.array_equal(test.labels, test2.labels)
    assert np.array_equal(test.encode(np.arange(50)), test2.encode(np.arange(50)))
    other = load_dataset(DataSpec(name="digits", seed=4))[1]
    assert not np.array_equal(test.labels, other.labels)
    small = load_dataset(DataSpec(name="digits", test_fraction=0.5))[1]
    assert len(small) == 899


def test_digits_latency_code_matches_the_raw_pixels():
    from sklearn.datasets import load_digits

    d = load_digits()
    train, test = load_dataset(DataSpec(name="digits", encoding="latency", steps=17))
    s = test.encode(np.arange(len(test)))
    assert s.shape == (360, 17, 64)
    # steps 17: a pixel of value v (0..16) fires once at step 16 - v, never when v == 0
    first = np.where(s.any(axis=1), s.argmax(axis=1), -1)
    # recover each test image from its spikes and find it in load_digits
    recovered = np.where(first >= 0, 16 - first, 0)
    assert np.array_equal(s.sum(axis=1), (recovered > 0).astype(np.float32))
    rows = {tuple(r): i for i, r in enumerate(d.data.astype(int))}
    for k in range(len(test)):
        i = rows[tuple(recovered[k])]
        assert d.target[i] == test.labels[k]


def test_digits_limit_is_class_balanced():
    train, test = load_dataset(DataSpec(name="digits", limit=30))
    assert len(train) == 30 and len(test) == 30
    assert np.array_equal(np.bincount(train.labels, minlength=10), np.full(10, 3))


# ---------------------------------------------------------------- SpikeDataset batching

def test_batches_encode_each_sample_the_same_whatever_the_batch_or_shuffle():
    train, _ = load_dataset(DataSpec(name="digits", steps=8, seed=5, limit=40))
    import torch

    seen, spikes = [], {}
    for x, y in train.batches(16, shuffle=True, seed=11):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (8, 64) and x.shape[0] == y.shape[0] <= 16
        for xi, yi in zip(x.numpy(), y.numpy()):
            seen.append(int(yi))
            spikes.setdefault(xi.tobytes(), int(yi))
    assert sorted(seen) == sorted(train.labels.tolist())
    direct = train.encode(np.arange(len(train)))
    for k in range(len(train)):  # every sample's spikes were produced identically in a batch
        assert spikes[direct[k].tobytes()] == train.labels[k]
    order = [int(v) for _, y in train.batches(16, shuffle=True, seed=11) for v in y]
    assert order == seen  # same seed, same order
    with pytest.raises(IndexError):
        train.encode([len(train)])


def test_select_limit_takes_classes_round_robin_in_file_order():
    labels = np.array([0, 0, 0, 1, 2, 2, 1])
    assert select_limit(labels, 4).tolist() == [0, 1, 3, 4]
    assert select_limit(labels, None).tolist() == list(range(7))
    assert select_limit(labels, 100).tolist() == list(range(7))


def test_data_spec_rejects_bad_values():
    for bad in (dict(name="mnist"), dict(encoding="poisson"), dict(steps=0), dict(window=0.0),
                dict(test_fraction=1.0), dict(limit=0), dict(polarity="both")):
        with pytest.raises(ValueError, match=list(bad)[0]):
            DataSpec(**bad)


# ---------------------------------------------------------------- Fashion-MNIST (IDX)

def idx_bytes(magic: int, dims, data: bytes) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + data


def write_fashion(tmp_path, n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = 0
        images[:, 0, 1] = 255
        images[:, 0, 2] = 100
        labels = (np.arange(n) * 7 + 3) % 10
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(0x00000803, (n, 28, 28), images.tobytes())))
        (tmp_path / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx_bytes(0x00000801, (n,), bytes(labels.astype(np.uint8).tolist()))))
        out[prefix] = (images, labels)
    return out


def test_fashion_mnist_idx_files_decode_to_the_written_pixels_and_labels(tmp_path):
    written = write_fashion(tmp_path)
    train, test = load_dataset(DataSpec(name="fashion_mnist", dir=str(tmp_path), encoding="latency", steps=256))
    assert (len(train), len(test)) == (12, 5)
    assert train.input_shape == (784,) and train.num_classes == 10
    for ds, (images, labels) in ((train, written["train"]), (test, written["t10k"])):
        assert np.array_equal(ds.labels, labels)
        s = ds.encode(np.arange(len(ds)))
        assert s.shape == (len(ds), 256, 784)
        # latency, 256 steps: pixel v fires once at step 255 - v; v == 0 never fires
        flat = images.reshape(len(images), -1).astype(np.int64)
        first = np.where(s.any(axis=1), s.argmax(axis=1), -1)
        assert np.array_equal(first, np.where(flat > 0, 255 - flat, -1))
        assert np.array_equal(s.sum(axis=1), (flat > 0).astype(np.float32))


def test_fashion_mnist_rate_code_is_seeded_per_sample(tmp_path):
    written = write_fashion(tmp_path)
    spec = DataSpec(name="fashion_mnist", dir=str(tmp_path), encoding="rate", steps=50, seed=9)
    train, _ = load_dataset(spec)
    s = train.encode([4, 2])
    x = written["train"][0][[4, 2]].reshape(2, -1).astype(np.float32) / 255
    assert s[:, :, 0].sum() == 0 and s[:, :, 1].sum() == 100  # pixel 0 and pixel 255
    for k, i in enumerate((4, 2)):
        expected = rate_encode(x[k:k + 1], 50, per_sample_rng(9, TRAIN, i))[0]
        assert np.array_equal(s[k], expected)
    assert np.array_equal(train.encode([2])[0], s[1])


def test_fashion_mnist_limit_and_gunzipped_files(tmp_path):
    written = write_fashion(tmp_path)
    # a user who gunzipped one file: the same name without .gz is read too
    p = tmp_path / "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(p.read_bytes()))
    p.unlink()
    train, test = load_dataset(DataSpec(name="fashion_mnist", dir=str(tmp_path), limit=10))
    labels = written["train"][1]
    assert len(train) == 10 and sorted(train.labels.tolist()) == list(range(10))
    assert np.array_equal(test.labels, written["t10k"][1])
    assert np.array_equal(train.labels, labels[select_limit(labels, 10)])


def test_fashion_mnist_missing_directory_and_file_name_the_file_and_source(tmp_path):
    with pytest.raises(DatasetError, match=FASHION_URL):
        load_dataset(DataSpec(name="fashion_mnist", dir=str(tmp_path / "nowhere")))
    with pytest.raises(DatasetError, match="data.dir"):
        load_dataset(DataSpec(name="fashion_mnist"))
    write_fashion(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz: missing") as e:
        load_dataset(DataSpec(name="fashion_mnist", dir=str(tmp_path)))
    assert FASHION_URL in str(e.value) and isinstance(e.value, FileNotFoundError)


@pytest.mark.parametrize("corrupt, message", [
    (lambda raw: idx_bytes(0x00000801, (12, 28, 28), raw[16:]), "bad IDX magic number 0x00000801; expected 0x00000803"),
    (lambda raw: raw[:-100], "truncated"),
    (lambda raw: raw[:10], "truncated"),
])
def test_fashion_mnist_malformed_image_file_is_named(tmp_path, corrupt, message):
    write_fashion(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(corrupt(gzip.decompress(p.read_bytes()))))
    with pytest.raises(DatasetError, match=message) as e:
        load_dataset(DataSpec(name="fashion_mnist", dir=str(tmp_path)))
    assert "train-images-idx3-ubyte.gz" in str(e.value)


def test_fashion_mnist_not_gzip_and_count_mismatch(tmp_path):
    write_fashion(tmp_path)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(b"this is not gzip at all")
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz: not a readable gzip"):
        load_dataset(DataSpec(name="fashion_mnist", dir=str(tmp_path)))
    p.write_bytes(gzip.compress(idx_bytes(0x00000801, (11,), bytes(11))))
    with pytest.raises(DatasetError, match="12 images but train-labels-idx1-ubyte.gz has 11 labels"):
        load_dataset(DataSpec(name="fashion_mnist", dir=str(tmp_path)))


# ---------------------------------------------------------------- N-MNIST (40-bit events)

def nmnist_event(x, y, p, t) -> bytes:
    """One event as Orchard's files store it: x, y, p<<7 | t[22:16], t[15:8], t[7:0]."""
    assert 0 <= t < 2 ** 23
    return bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])


def write_nmnist(root, per_class=(2, 1)):
    """Train: ``per_class[0]`` files per class, Test: ``per_class[1]``. Sample k of class
    c has events (c, k, ON, 1000 * c + 10 k), (33, 0, OFF, 250000 + c), (c, 33, ON, 0x7FFFFF)."""
    for split, n in zip(("Train", "Test"), per_class):
        for c in range(10):
            folder = root / split / str(c)
            folder.mkdir(parents=True)
            for k in range(n):
                raw = (nmnist_event(c, k, 1, 1000 * c + 10 * k) + nmnist_event(33, 0, 0, 250000 + c)
                       + nmnist_event(c, 33, 1, 0x7FFFFF))
                (folder / f"{k:05d}.bin").write_bytes(raw)


def test_nmnist_event_bytes_decode_to_x_y_polarity_and_23_bit_timestamp(tmp_path):
    from neurodeploy.data.nmnist import read_events

    p = tmp_path / "e.bin"
    p.write_bytes(bytes([5, 7, 0x80 | 0x12, 0x34, 0x56]) + bytes([33, 0, 0x7F, 0xFF, 0xFF]) + bytes([0, 33, 0, 0, 1]))
    x, y, pol, t = read_events(p)
    assert x.tolist() == [5, 33, 0] and y.tolist() == [7, 0, 33]
    assert pol.tolist() == [1, 0, 0]
    assert t.tolist() == [0x123456, 0x7FFFFF, 1]


def test_nmnist_folders_load_with_labels_and_binned_polarity_channels(tmp_path):
    write_nmnist(tmp_path)
    spec = DataSpec(name="nmnist", dir=str(tmp_path), steps=10, window=300_000)
    train, test = load_dataset(spec)
    assert (len(train), len(test)) == (20, 10)
    assert train.input_shape == (2, 34, 34) and train.num_classes == 10
    assert train.labels.tolist() == list(range(10)) * 2  # classes round-robin
    s = train.encode(np.arange(len(train)))
    assert s.shape == (20, 10, 2, 34, 34)
    for n in range(20):
        c, k = n % 10, n // 10
        expected = np.zeros((10, 2, 34, 34), np.float32)
        expected[(1000 * c + 10 * k) // 30000, 1, k, c] = 1  # (step, ON, y, x)
        expected[250000 // 30000, 0, 0, 33] = 1  # OFF event at x=33, y=0, 250 ms -> step 8
        # the event at 0x7FFFFF us (8.4 s) lies outside the 300 ms window
        assert np.array_equal(s[n], expected), n
    merged, _ = load_dataset(DataSpec(name="nmnist", dir=str(tmp_path), steps=10, window=300_000,
                                      polarity="merge", limit=5))
    assert merged.input_shape == (1, 34, 34) and len(merged) == 5
    assert np.array_equal(merged.encode([3])[0, :, 0], s[3].sum(axis=1))


def test_nmnist_counts_and_window(tmp_path):
    root = tmp_path
    write_nmnist(root, per_class=(1, 1))
    f = root / "Train" / "0" / "00000.bin"
    f.write_bytes(nmnist_event(2, 3, 1, 100) * 3 + nmnist_event(2, 3, 1, 0x600000))
    train, _ = load_dataset(DataSpec(name="nmnist", dir=str(root), steps=4, window=2 ** 23, counts=True))
    s = train.encode([0])[0]
    assert s[0, 1, 3, 2] == 3 and s[3, 1, 3, 2] == 1  # 0x600000 / 2**23 = 3/4
    assert s.sum() == 4


def test_nmnist_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="Train: missing") as e:
        load_dataset(DataSpec(name="nmnist", dir=str(tmp_path)))
    assert NMNIST_URL in str(e.value)
    (tmp_path / "Train.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match="found Train.zip: unzip it"):
        load_dataset(DataSpec(name="nmnist", dir=str(tmp_path)))
    write_nmnist(tmp_path)
    bad = tmp_path / "Test" / "7" / "00000.bin"
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(DatasetError, match=r"00000.bin: 13 bytes is not a multiple of 5") as e:
        load_dataset(DataSpec(name="nmnist", dir=str(tmp_path)))
    assert "Test/7" in str(e.value)
    bad.write_bytes(nmnist_event(34, 0, 0, 5))
    _, test = load_dataset(DataSpec(name="nmnist", dir=str(tmp_path)))
    with pytest.raises(DatasetError, match="outside the 34x34 sensor"):
        test.encode([7])
    import shutil
    shutil.rmtree(tmp_path / "Test" / "4")
    with pytest.raises(DatasetError, match="Test/4: missing"):
        load_dataset(DataSpec(name="nmnist", dir=str(tmp_path)))


# ---------------------------------------------------------------- SHD (HDF5)

def write_shd(path, samples, labels, time_dtype=np.float16):
    import h5py

    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.dtype(time_dtype)))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.dtype(np.uint16)))
        for i, (t, u) in enumerate(samples):
            times[i] = np.asarray(t, dtype=time_dtype)
            units[i] = np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(samples), np.uint16))


SHD_TRAIN = [([0.0, 0.25, 0.5, 0.5, 1.25], [0, 699, 3, 3, 10]),
             ([0.125, 1.5], [1, 2]),
             ([], []),
             ([0.75], [350])]
SHD_TEST = [([0.0625], [42]), ([0.5, 0.5], [7, 8])]


def test_shd_hdf5_spikes_bin_into_700_channels(tmp_path):
    write_shd(tmp_path / "shd_train.h5", SHD_TRAIN, [19, 0, 5, 7])
    write_shd(tmp_path / "shd_test.h5", SHD_TEST, [3, 12], time_dtype=np.float32)
    train, test = load_dataset(DataSpec(name="shd", dir=str(tmp_path), steps=8, window=2.0))
    assert train.input_shape == (700,) and train.num_classes == 20
    assert train.labels.tolist() == [19, 0, 5, 7] and test.labels.tolist() == [3, 12]
    s = train.encode(np.arange(4))
    assert s.shape == (4, 8, 700)
    expected = np.zeros((4, 8, 700), np.float32)
    # window 2 s over 8 steps: 0.25 s per step
    expected[0, 0, 0] = expected[0, 1, 699] = expected[0, 2, 3] = expected[0, 5, 10] = 1
    expected[1, 0, 1] = expected[1, 6, 2] = 1
    expected[3, 3, 350] = 1
    assert np.array_equal(s, expected)
    counts = load_dataset(DataSpec(name="shd", dir=str(tmp_path), steps=8, window=2.0, counts=True))[0]
    assert counts.encode([0])[0, 2, 3] == 2
    # default window 1.4 s: 1.5 s falls outside
    t = load_dataset(DataSpec(name="shd", dir=str(tmp_path), steps=14))[0].encode([1])[0]
    assert t[1, 1] == 1 and t.sum() == 1
    st = test.encode([1, 0])
    assert st[0, 2, 7] == st[0, 2, 8] == st[1, 0, 42] == 1 and st.sum() == 3


def test_shd_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="shd_train.h5: missing") as e:
        load_dataset(DataSpec(name="shd", dir=str(tmp_path)))
    assert SHD_URL in str(e.value)
    (tmp_path / "shd_train.h5.gz").write_bytes(b"x")
    with pytest.raises(DatasetError, match="found shd_train.h5.gz: gunzip it first"):
        load_dataset(DataSpec(name="shd", dir=str(tmp_path)))
    (tmp_path / "shd_train.h5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="shd_train.h5: not a readable HDF5 file"):
        load_dataset(DataSpec(name="shd", dir=str(tmp_path)))
    import h5py
    with h5py.File(tmp_path / "shd_train.h5", "w") as f:
        f.create_dataset("labels", data=np.zeros(2, np.uint16))
    with pytest.raises(DatasetError, match="shd_train.h5: missing datasets spikes/times, spikes/units"):
        load_dataset(DataSpec(name="shd", dir=str(tmp_path)))
    write_shd(tmp_path / "shd_train.h5", SHD_TRAIN, [0, 1, 2, 3])
    write_shd(tmp_path / "shd_test.h5", [([0.1], [700])], [0])
    _, test = load_dataset(DataSpec(name="shd", dir=str(tmp_path)))
    with pytest.raises(DatasetError, match="shd_test.h5: sample 0 has unit 700; expected 0..699"):
        test.encode([0])
    write_shd(tmp_path / "shd_test.h5", SHD_TEST, [3, 20])
    with pytest.raises(DatasetError, match="labels 3..20 out of range"):
        load_dataset(DataSpec(name="shd", dir=str(tmp_path)))


def test_load_dataset_returns_spike_datasets_for_every_name(tmp_path):
    (tmp_path / "f").mkdir()
    write_fashion(tmp_path / "f")
    write_nmnist(tmp_path / "n", per_class=(1, 1))
    (tmp_path / "s").mkdir()
    write_shd(tmp_path / "s" / "shd_train.h5", SHD_TRAIN, [0, 1, 2, 3])
    write_shd(tmp_path / "s" / "shd_test.h5", SHD_TEST, [0, 1])
    for name, d, shape in (("digits", None, (64,)), ("fashion_mnist", "f", (784,)),
                           ("nmnist", "n", (2, 34, 34)), ("shd", "s", (700,))):
        train, test = load_dataset(DataSpec(name=name, dir=None if d is None else str(tmp_path / d), steps=5))
        assert isinstance(train, SpikeDataset) and isinstance(test, SpikeDataset)
        x, y = next(iter(test.batches(2)))
        assert tuple(x.shape) == (2, 5, *shape) and tuple(y.shape) == (2,)
        assert np.array_equal(y.numpy(), test.labels[:2])
