"""CIFAR-10/100 and Imagenette readers: tiny files written in the published formats
(batch pickles with protocol 2 and bytes keys, as the Python 2 originals; the .tar.gz
around them; JPEG folders written with Pillow), decoded values checked against what
was written; errors on missing and malformed files name the file."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.config import ConfigError, parse_config
from neurodeploy.data import TEST, TRAIN, DatasetError, DataSpec, load_dataset, per_sample_rng, select_limit
from neurodeploy.data.encoding import rate_encode
from neurodeploy.errors import NeurodeployError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGENETTE_URL = "https://github.com/fastai/imagenette"
WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
         "n03394916", "n03417042", "n03425413", "n03445777", "n03888605")


def cifar_batch(n: int, num_classes: int, seed: int, label_key: bytes) -> bytes:
    """A batch pickle as published: protocol 2, bytes keys, uint8 N x 3072 data."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in (np.arange(n) * 3 + seed) % num_classes]
    return pickle.dumps({b"batch_label": b"batch", label_key: labels, b"data": data,
                         b"filenames": [b"img_%d.png" % k for k in range(n)]}, protocol=2)


def write_cifar(root, variant: str = "cifar10", archive: bool = False, n: int = 6) -> dict:
    """The published folder (or .tar.gz) under ``root``; returns file name -> bytes."""
    if variant == "cifar10":
        folder, names, key, classes = ("cifar-10-batches-py",
                                       [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"], b"labels", 10)
    else:
        folder, names, key, classes = "cifar-100-python", ["train", "test"], b"fine_labels", 100
    files = {name: cifar_batch(n, classes, seed, key) for seed, name in enumerate(names)}
    if archive:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, raw in files.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
        tar_name = "cifar-10-python.tar.gz" if variant == "cifar10" else "cifar-100-python.tar.gz"
        (root / tar_name).write_bytes(buf.getvalue())
    else:
        (root / folder).mkdir(parents=True)
        for name, raw in files.items():
            (root / folder / name).write_bytes(raw)
    return files


def written(raw: bytes, key: bytes):
    d = pickle.loads(raw, encoding="bytes")
    return d[b"data"].reshape(-1, 3, 32, 32), np.asarray(d[key])


def test_cifar10_batches_decode_to_the_written_planes_and_labels(tmp_path):
    files = write_cifar(tmp_path)
    train, test = load_dataset(DataSpec(name="cifar10", dir=str(tmp_path), encoding="latency", steps=256))
    assert (len(train), len(test)) == (30, 6) and train.input_shape == (3, 32, 32) and train.num_classes == 10
    parts = [written(files[f"data_batch_{k}"], b"labels") for k in range(1, 6)]
    images = np.concatenate([p[0] for p in parts])
    assert np.array_equal(train.labels, np.concatenate([p[1] for p in parts]))
    s = train.encode(np.arange(30))
    first = np.where(s.any(axis=1), s.argmax(axis=1), -1)  # latency, 256 steps: pixel v at 255 - v
    assert np.array_equal(first, np.where(images > 0, 255 - images.astype(np.int64), -1))
    # the row is the red plane, then green, then blue: channel 1 is bytes 1024..2047
    raw = pickle.loads(files["test_batch"], encoding="bytes")[b"data"]
    t = test.encode([2])[0]
    assert np.array_equal(np.where(t.any(axis=0), t.argmax(axis=0), -1)[1].reshape(-1),
                          np.where(raw[2, 1024:2048] > 0, 255 - raw[2, 1024:2048].astype(np.int64), -1))


def test_cifar_archive_reads_like_the_extracted_folder_and_limit_is_balanced(tmp_path):
    (tmp_path / "a").mkdir()
    write_cifar(tmp_path / "a", archive=True)
    write_cifar(tmp_path / "f")
    a_train, a_test = load_dataset(DataSpec(name="cifar10", dir=str(tmp_path / "a"), steps=3, seed=4))
    f_train, f_test = load_dataset(DataSpec(name="cifar10", dir=str(tmp_path / "f"), steps=3, seed=4))
    inner = load_dataset(DataSpec(name="cifar10", dir=str(tmp_path / "f" / "cifar-10-batches-py"), steps=3,
                                  seed=4))[0]
    for x, y in ((a_train, f_train), (a_test, f_test), (inner, f_train)):
        assert np.array_equal(x.labels, y.labels)
        assert np.array_equal(x.encode(np.arange(len(x))), y.encode(np.arange(len(y))))
    limited, _ = load_dataset(DataSpec(name="cifar10", dir=str(tmp_path / "a"), steps=3, seed=4, limit=10))
    ids = select_limit(f_train.labels, 10)
    assert sorted(limited.labels.tolist()) == list(range(10))
    assert np.array_equal(limited.encode(np.arange(10)), f_train.encode(ids))  # same sample, same spikes


def test_cifar100_fine_labels_and_rate_code_seeded_by_file_position(tmp_path):
    files = write_cifar(tmp_path, "cifar100", archive=True, n=7)
    train, test = load_dataset(DataSpec(name="cifar100", dir=str(tmp_path), steps=20, seed=5))
    assert train.num_classes == 100 and len(train) == 7 and len(test) == 7
    images, labels = written(files["train"], b"fine_labels")
    assert np.array_equal(train.labels, labels)
    x = images[3:4].astype(np.float32) / 255
    assert np.array_equal(train.encode([3])[0], rate_encode(x, 20, per_sample_rng(5, TRAIN, 3))[0])
    ti, _ = written(files["test"], b"fine_labels")
    assert np.array_equal(test.encode([1])[0],
                          rate_encode(ti[1:2].astype(np.float32) / 255, 20, per_sample_rng(5, TEST, 1))[0])


class _Call:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("content, message", [
    (b"not a pickle at all", "test_batch: not a CIFAR-10 batch pickle"),
    (pickle.dumps({b"data": _Call(), b"labels": []}, protocol=2), "refused global"),
    (pickle.dumps([1, 2], protocol=2), "expected a pickled dict"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2), "missing key b'labels'"),
    (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=2),
     r"b'data' is uint8 \(2, 100\); expected uint8 N x 3072"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2),
     "2 images but 1 labels"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, protocol=2),
     r"labels 0..10 out of range; expected 0..9"),
])
def test_cifar_malformed_batch_is_one_line_naming_the_file(tmp_path, content, message):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    with pytest.raises(DatasetError, match=message) as e:
        load_dataset(DataSpec(name="cifar10", dir=str(tmp_path)))
    assert "test_batch" in str(e.value) and "\n" not in str(e.value)


def test_cifar_missing_files_and_bad_archive_are_named(tmp_path):
    with pytest.raises(DatasetError, match=CIFAR_URL):
        load_dataset(DataSpec(name="cifar10", dir=str(tmp_path / "nowhere")))
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="data_batch_3: missing.*cifar-10-python.tar.gz") as e:
        load_dataset(DataSpec(name="cifar10", dir=str(tmp_path)))
    assert isinstance(e.value, FileNotFoundError)
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DatasetError, match="cifar-100-python.tar.gz: not a readable .tar.gz"):
        load_dataset(DataSpec(name="cifar100", dir=str(tmp_path)))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/train")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(DatasetError, match="archive lacks cifar-100-python/test"):
        load_dataset(DataSpec(name="cifar100", dir=str(tmp_path)))


# ---------------------------------------------------------------- Imagenette

def write_imagenette(root, per_class=(2, 1), size=(40, 20), classes=WNIDS) -> dict:
    """train/<wnid>/*.JPEG and val/<wnid>/*.JPEG: left half colour A, right half
    colour B (per class and image); returns (split, wnid, k) -> (A, B)."""
    from PIL import Image

    colours = {}
    for split, n in zip(("train", "val"), per_class):
        for c, wnid in enumerate(classes):
            (root / split / wnid).mkdir(parents=True)
            for k in range(n):
                a = (20 * c + 10, 200 - 10 * k, 60)
                b = (240 - 20 * c, 30 + 50 * k, 200)
                im = np.zeros((size[1], size[0], 3), np.uint8)
                im[:, :size[0] // 2] = a
                im[:, size[0] // 2:] = b
                Image.fromarray(im).save(root / split / wnid / f"{wnid}_{k}.JPEG", quality=95)
                colours[(split, wnid, k)] = (a, b)
    return colours


def test_imagenette_resizes_shorter_side_and_center_crops_with_sorted_class_labels(tmp_path):
    colours = write_imagenette(tmp_path)
    train, test = load_dataset(DataSpec(name="imagenette", dir=str(tmp_path), encoding="latency", steps=256,
                                        image_size=8))
    assert train.input_shape == (3, 8, 8) and (len(train), len(test)) == (20, 10) and train.num_classes == 10
    assert train.labels.tolist() == [c for c in range(10) for _ in range(2)]
    s = train.encode(np.arange(20))
    pixels = np.where(s.any(axis=1), 255 - s.argmax(axis=1), 0)  # latency: back to pixel values
    # 40x20 -> 16x8, center crop: columns 4..11 of 16, the left half's colour in 0..3
    for i, (wnid, k) in enumerate((w, k) for w in WNIDS for k in range(2)):
        a, b = colours[("train", wnid, k)]
        assert np.abs(pixels[i, :, :, 0] - np.asarray(a)[:, None]).max() <= 8
        assert np.abs(pixels[i, :, :, 7] - np.asarray(b)[:, None]).max() <= 8


def test_imagenette_grayscale_jpeg_becomes_rgb_and_limit_decodes_a_balanced_subset(tmp_path):
    from PIL import Image

    write_imagenette(tmp_path, per_class=(3, 1), size=(12, 12))
    gray = tmp_path / "val" / WNIDS[4] / f"{WNIDS[4]}_0.JPEG"
    Image.fromarray(np.full((30, 50), 128, np.uint8), mode="L").save(gray)
    train, test = load_dataset(DataSpec(name="imagenette", dir=str(tmp_path), encoding="latency", steps=256,
                                        image_size=6, limit=10))
    assert len(train) == 10 and sorted(train.labels.tolist()) == list(range(10))
    t = test.encode([4])[0]
    assert np.abs(255 - t.argmax(axis=0) - 128).max() <= 2 and t.shape == (256, 3, 6, 6)


def test_imagenette_missing_folders_and_unreadable_images_are_named(tmp_path):
    with pytest.raises(DatasetError, match=IMAGENETTE_URL):
        load_dataset(DataSpec(name="imagenette", dir=str(tmp_path / "nowhere")))
    write_imagenette(tmp_path, per_class=(1, 1), size=(8, 8))
    (tmp_path / "val" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=f"{WNIDS[0]}_0.JPEG: not a readable JPEG image"):
        load_dataset(DataSpec(name="imagenette", dir=str(tmp_path), image_size=4))
    (tmp_path / "val" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG").unlink()
    with pytest.raises(DatasetError, match=f"val/{WNIDS[0]}: no .JPEG images"):
        load_dataset(DataSpec(name="imagenette", dir=str(tmp_path), image_size=4))
    (tmp_path / "val" / WNIDS[0]).rmdir()
    with pytest.raises(DatasetError, match="val: 9 class folders; expected 10"):
        load_dataset(DataSpec(name="imagenette", dir=str(tmp_path), image_size=4))
    (tmp_path / "val" / "n99999999").mkdir()
    (tmp_path / "val" / "n99999999" / "x.JPEG").write_bytes((tmp_path / "train" / WNIDS[1] /
                                                              f"{WNIDS[1]}_0.JPEG").read_bytes())
    with pytest.raises(DatasetError, match="different class folders"):
        load_dataset(DataSpec(name="imagenette", dir=str(tmp_path), image_size=4))


def test_image_size_belongs_to_imagenette_only():
    with pytest.raises(ValueError, match="data.image_size"):
        DataSpec(name="cifar10", image_size=16)
    with pytest.raises(ConfigError, match="data.image_size: sets imagenette's image side"):
        parse_config({"data": {"name": "cifar10", "image_size": 16}})
    assert parse_config({"data": {"name": "imagenette", "image_size": 16}}).data.image_size == 16


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=int(os.environ.get("NEURODEPLOY_FUZZ_EXAMPLES", "25")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                derandomize=os.environ.get("NEURODEPLOY_FUZZ_RANDOM") != "1")


def _mutate(data, raw: bytes) -> bytes:
    kind = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if kind == "truncate":
        return raw[:data.draw(st.integers(0, max(0, len(raw) - 1)))]
    if kind == "flip":
        b = bytearray(raw)
        for i in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=8)):
            b[i] ^= data.draw(st.integers(1, 255))
        return bytes(b)
    return data.draw(st.binary(max_size=200))


def _load_all(spec):
    train, test = load_dataset(spec)
    for ds in (train, test):
        if len(ds):
            ds.encode(np.arange(len(ds)))


@FUZZ
@given(data=st.data())
def test_mutated_cifar_batches_load_or_fail_with_a_documented_error(tmp_path, data):
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    archive = data.draw(st.booleans())
    write_cifar(d, n=2, archive=archive)
    p = (d / "cifar-10-python.tar.gz" if archive else
         d / "cifar-10-batches-py" / data.draw(st.sampled_from(["data_batch_2", "test_batch"])))
    p.write_bytes(_mutate(data, p.read_bytes()))
    try:
        _load_all(DataSpec(name="cifar10", dir=str(d), steps=2))
    except NeurodeployError as e:
        assert "\n" not in str(e) and p.name in str(e)


@FUZZ
@given(data=st.data())
def test_mutated_imagenette_jpegs_load_or_fail_with_a_documented_error(tmp_path, data):
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    write_imagenette(d, per_class=(1, 1), size=(10, 8))
    p = d / "val" / WNIDS[3] / f"{WNIDS[3]}_0.JPEG"
    p.write_bytes(_mutate(data, p.read_bytes()))
    try:
        _load_all(DataSpec(name="imagenette", dir=str(d), steps=2, image_size=4))
    except NeurodeployError as e:
        assert "\n" not in str(e) and p.name in str(e)
