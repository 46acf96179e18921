"""Fashion-MNIST from the published IDX gzip files (Xiao et al. 2017,
https://github.com/zalandoresearch/fashion-mnist).

``data.dir`` holds train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (an already gunzipped file under
the same name without ``.gz`` is read too).

IDX format (big-endian): bytes 0-1 zero, byte 2 the element type (0x08 = unsigned
byte), byte 3 the number of dimensions; then one uint32 per dimension; then the
elements in C order. Images: magic 0x00000803, dims (N, 28, 28); labels: magic
0x00000801, dims (N,), values 0..9.

Images stay uint8 in memory (47 MB for the 60000 training images; with ``limit`` only
the file's prefix up to the last selected image is read); intensity = pixel / 255,
rate- or latency-encoded per batch. Input (784,).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from neurodeploy.data import TEST, TRAIN, DatasetError, DataSpec, SpikeDataset, data_dir, encode_images, select_limit

TITLE = "Fashion-MNIST"
URL = "https://github.com/zalandoresearch/fashion-mnist"
FILES = {TRAIN: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         TEST: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
IMAGE_SHAPE = (28, 28)
INPUT_SHAPE = (784,)
NUM_CLASSES = 10
UBYTE = 0x08


def _published_hint() -> str:
    return f"{TITLE} is published at {URL}"


def find_file(directory: Path, name: str) -> Path:
    """``directory/name`` (or its gunzipped twin), or a DatasetError."""
    path = directory / name
    if path.is_file():
        return path
    plain = directory / name[:-3] if name.endswith(".gz") else None
    if plain is not None and plain.is_file():
        return plain
    raise DatasetError(f"{path}: missing; expected the {TITLE} file {name} (IDX, gzip) as published. "
                       f"{_published_hint()}; data.dir must hold {', '.join(FILES[TRAIN] + FILES[TEST])}")


def _read_exact(f, n: int, path: Path, what: str) -> bytes:
    try:
        b = f.read(n)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: not a readable gzip file ({e}); expected an IDX file compressed "
                           f"with gzip as published. {_published_hint()}") from None
    if len(b) != n:
        raise DatasetError(f"{path}: truncated: {what} needs {n} bytes, the file has {len(b)} left. "
                           f"{_published_hint()}")
    return b


def read_idx(path, ndim: int, count: Optional[int] = None) -> Tuple[Tuple[int, ...], np.ndarray]:
    """Read an unsigned-byte IDX file (gzip if the name ends in .gz) with ``ndim``
    dimensions -> (dims from the header, uint8 array of the first ``count`` items
    (all when None), shape (count, *dims[1:]))."""
    path = Path(path)
    expected_magic = (UBYTE << 8) | ndim
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        magic = int.from_bytes(_read_exact(f, 4, path, "the IDX magic number"), "big")
        if magic != expected_magic:
            raise DatasetError(f"{path}: bad IDX magic number 0x{magic:08X}; expected 0x{expected_magic:08X} "
                               f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}). "
                               f"{_published_hint()}")
        dims = tuple(int(d) for d in np.frombuffer(_read_exact(f, 4 * ndim, path, "the IDX dimensions"),
                                                   dtype=">u4"))
        n = dims[0] if count is None else min(int(count), dims[0])
        item = int(np.prod(dims[1:], dtype=np.int64))
        data = _read_exact(f, n * item, path, f"{n} items of {item} bytes")
    return dims, np.frombuffer(data, dtype=np.uint8).reshape(n, *dims[1:])


def read_split(directory: Path, split: int, limit: Optional[int] = None):
    """(images (n, 28, 28) uint8, labels (n,) int64, indices in the files) of a split;
    with ``limit`` a class-balanced subset (only the needed prefix of the image file is read)."""
    image_name, label_name = FILES[split]
    image_path, label_path = find_file(directory, image_name), find_file(directory, label_name)
    (n_labels,), labels = read_idx(label_path, 1)
    if labels.size and labels.max() >= NUM_CLASSES:
        raise DatasetError(f"{label_path}: label {int(labels.max())} out of range; expected 0..{NUM_CLASSES - 1}")
    ids = select_limit(labels, limit)
    count = int(ids[-1]) + 1 if len(ids) else 0
    dims, images = read_idx(image_path, 3, count=count)
    if dims[1:] != IMAGE_SHAPE:
        raise DatasetError(f"{image_path}: images are {dims[1]}x{dims[2]}; expected {TITLE}'s 28x28. "
                           f"{_published_hint()}")
    if dims[0] != n_labels:
        raise DatasetError(f"{image_path}: {dims[0]} images but {label_path.name} has {n_labels} labels; "
                           f"expected the same count")
    return images[ids], labels[ids].astype(np.int64), ids


def load_splits(spec: DataSpec):
    directory = data_dir(spec, TITLE, URL, ", ".join(FILES[TRAIN] + FILES[TEST]))
    splits = []
    for split in (TRAIN, TEST):
        images, labels, ids = read_split(directory, split, spec.limit)
        flat = images.reshape(len(images), -1)

        def encode(i, flat=flat, ids=ids, split=split):
            return encode_images(flat, i, spec, split, scale=255.0, sample_ids=ids)

        splits.append(SpikeDataset(encode, labels, INPUT_SHAPE, NUM_CLASSES, spec.steps,
                                   name=f"fashion_mnist/{'train' if split == TRAIN else 'test'}"))
    return tuple(splits)
