"""Datasets as spike trains, from local files in their published formats.

``load_dataset(DataSpec) -> (train, test)``, each a :class:`SpikeDataset` that keeps
its raw data compact (uint8 images, event files read per batch) and encodes on the fly,
per batch. Nothing is downloaded.

Encoding is deterministic per sample: the random stream of a rate-coded sample is
seeded by ``(seed, split, index)``, with ``index`` the sample's position in the
published file (digits: in ``load_digits()``), so the same sample always gets the same
spikes, whatever the batch, the shuffle or ``limit``.

Datasets (``DataSpec.name``):

- ``digits``: scikit-learn's 8x8 handwritten digits (offline default), input (64,).
- ``fashion_mnist``: IDX gzip files, input (784,), values pixel / 255.
- ``nmnist``: Orchard et al.'s binary event files, input (2, 34, 34) =
  (polarity OFF/ON, y, x), or (1, 34, 34) with ``polarity='merge'``.
- ``shd``: Spiking Heidelberg Digits HDF5 files, input (700,), 20 classes.
- ``cifar10`` / ``cifar100``: the "python version" pickles (or their .tar.gz), input
  (3, 32, 32), values pixel / 255.
- ``imagenette``: fast.ai's JPEG folders, resized and center-cropped to
  ``image_size``, input (3, S, S), values pixel / 255.

The readers are our own, not tonic's: the three formats take a few lines each (IDX
header, 5-byte events, three HDF5 datasets); tonic's dataset classes expect their own
download/extract layout and archive checksums rather than the files as published, it
adds a dependency the GPU machines would need too, and its frame transforms bin by
their own edge rules, while the binning here is one documented rule shared by
training and the Loihi input.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple

import numpy as np

from neurodeploy.errors import InputError

DATASETS = ("digits", "fashion_mnist", "nmnist", "shd", "cifar10", "cifar100", "imagenette")
ENCODINGS = ("rate", "latency")
POLARITY = ("split", "merge")

TRAIN, TEST = 0, 1  # the `split` number in the per-sample random stream


class DatasetError(InputError, FileNotFoundError):
    """A dataset directory or file is missing or malformed (the message names the file,
    what was expected and where the dataset is published)."""


@dataclass(frozen=True)
class DataSpec:
    """What to load and how to encode it.

    name: 'digits' | 'fashion_mnist' | 'nmnist' | 'shd' | 'cifar10' | 'cifar100' | 'imagenette'.
    dir: local directory holding the published files (not used by digits).
    encoding: 'rate' | 'latency' (image datasets: digits, fashion_mnist).
    steps: time steps per sample.
    window: event data only, the time span binned into ``steps`` bins, in the dataset's
        own time unit: N-MNIST microseconds (default 300_000), SHD seconds (default 1.4).
        None: the dataset's default. Ignored for images.
    test_fraction: digits only, fraction of the 1797 images in the test split.
    seed: seeds the digits split and the rate code.
    limit: samples per split (a class-balanced subset, see :func:`select_limit`).
    polarity: N-MNIST only, 'split' (2 channels, OFF then ON) or 'merge' (1 channel).
    counts: event data only, bins hold event counts instead of 0/1 spikes.
    image_size: imagenette only, the side of the square input images (None: 64).
    """

    name: str = "digits"
    dir: Optional[str] = None
    encoding: str = "rate"
    steps: int = 20
    window: Optional[float] = None
    test_fraction: float = 0.2
    seed: int = 0
    limit: Optional[int] = None
    polarity: str = "split"
    counts: bool = False
    image_size: Optional[int] = None

    def __post_init__(self):
        if self.name not in DATASETS:
            raise ValueError(f"data.name: unknown dataset {self.name!r}; known: {', '.join(DATASETS)}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"data.encoding: unknown encoding {self.encoding!r}; known: {', '.join(ENCODINGS)}")
        if self.polarity not in POLARITY:
            raise ValueError(f"data.polarity: expected one of {', '.join(POLARITY)}, got {self.polarity!r}")
        if int(self.steps) < 1:
            raise ValueError(f"data.steps: expected >= 1, got {self.steps}")
        if self.window is not None and not float(self.window) > 0:
            raise ValueError(f"data.window: expected > 0, got {self.window}")
        if not 0 < float(self.test_fraction) < 1:
            raise ValueError(f"data.test_fraction: expected in (0, 1), got {self.test_fraction}")
        if self.image_size is not None and (self.name != "imagenette" or int(self.image_size) < 1):
            raise ValueError(f"data.image_size: the side of imagenette's input images, >= 1; got "
                             f"{self.image_size} with dataset {self.name!r}")
        if self.limit is not None and int(self.limit) < 1:
            raise ValueError(f"data.limit: expected >= 1, got {self.limit}")


class SpikeDataset:
    """One split. ``len``, ``input_shape``, ``num_classes``, ``labels`` (int64),
    ``steps``; ``encode(indices)`` -> (n, steps, *input_shape) float32 spikes;
    ``batches(batch_size, shuffle, seed)`` -> (spikes float32, labels int64) torch tensors.

    Holds only the labels and an ``encode_fn`` (positions -> spikes) over the raw data;
    nothing encoded is kept.
    """

    def __init__(self, encode_fn: Callable[[np.ndarray], np.ndarray], labels: np.ndarray,
                 input_shape: Tuple[int, ...], num_classes: int, steps: int, name: str = ""):
        self._encode = encode_fn
        self.labels = np.asarray(labels, dtype=np.int64)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.steps = int(steps)
        self.name = name

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"SpikeDataset({self.name!r}, {len(self)} samples, input {self.input_shape}, "
                f"{self.num_classes} classes, {self.steps} steps)")

    def encode(self, indices) -> np.ndarray:
        """Spikes of the samples at ``indices`` (positions in this split), in that order:
        (n, steps, *input_shape) float32."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name or 'dataset'}: indices must lie in [0, {len(self)}), "
                             f"got {idx.min()}..{idx.max()}")
        if len(idx) == 0:
            return np.zeros((0, self.steps, *self.input_shape), dtype=np.float32)
        out = self._encode(idx)
        assert out.shape == (len(idx), self.steps, *self.input_shape), out.shape
        return out

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator:
        """Yields (spikes (b, steps, *input_shape) float32, labels (b,) int64) torch
        tensors, encoding one batch at a time; ``shuffle`` permutes with ``seed``."""
        import torch

        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = np.arange(len(self))
        if shuffle:
            np.random.default_rng(seed).shuffle(order)
        for start in range(0, len(order), int(batch_size)):
            idx = order[start:start + int(batch_size)]
            yield torch.from_numpy(self.encode(idx)), torch.from_numpy(self.labels[idx])


def per_sample_rng(seed: int, split: int, index: int) -> np.random.Generator:
    """The random stream of one sample: seeded by (seed, split, index in the file)."""
    return np.random.default_rng([int(seed), int(split), int(index)])


def encode_images(images: np.ndarray, idx: np.ndarray, spec: DataSpec, split: int,
                  scale: float = 1.0, sample_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """Images (N, *shape) (``images[idx] / scale`` in [0, 1]) -> spikes with spec's
    encoding, (len(idx), steps, *shape). ``sample_ids[idx]`` (default ``idx``) seed the
    rate code per sample."""
    from neurodeploy.data.encoding import latency_encode, rate_encode

    x = images[idx].astype(np.float32)
    if scale != 1.0:
        x /= np.float32(scale)
    if spec.encoding == "latency":
        return latency_encode(x, spec.steps)
    if spec.encoding == "rate":
        ids = idx if sample_ids is None else np.asarray(sample_ids)[idx]
        return np.concatenate([rate_encode(x[k:k + 1], spec.steps, per_sample_rng(spec.seed, split, i))
                               for k, i in enumerate(ids)])
    raise ValueError(f"unknown encoding {spec.encoding!r} ({', '.join(ENCODINGS)})")


def select_limit(labels: np.ndarray, limit: Optional[int]) -> np.ndarray:
    """Indices of a class-balanced subset of ``limit`` samples, deterministic: classes
    taken round-robin, each in file order (all indices when ``limit`` is None or >= n).
    Returned sorted, so the subset keeps the file's order."""
    labels = np.asarray(labels)
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rank = np.empty(n, dtype=np.int64)  # position of each sample within its class
    for members in per_class:
        rank[members] = np.arange(len(members))
    # round-robin: every class's 0th sample, then every class's 1st, ...; ties by file order
    order = np.lexsort((np.arange(n), rank))
    return np.sort(order[:int(limit)])


def data_dir(spec: DataSpec, title: str, url: str, contents: str) -> Path:
    """spec.dir as an existing directory, or a DatasetError saying what belongs there."""
    hint = (f"{title} is published at {url}; put {contents} in a directory and set data.dir "
            f"in the config or pass --data-dir DIR (nothing is downloaded)")
    if spec.dir is None:
        raise DatasetError(f"{title}: no data directory given. {hint}")
    path = Path(spec.dir).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{path}: {title} data directory does not exist. {hint}")
    return path


def load_dataset(spec: DataSpec) -> Tuple[SpikeDataset, SpikeDataset]:
    """(train, test) :class:`SpikeDataset` for ``spec``."""
    modules = {"digits": "neurodeploy.data.digits", "fashion_mnist": "neurodeploy.data.fashion_mnist",
               "nmnist": "neurodeploy.data.nmnist", "shd": "neurodeploy.data.shd",
               "cifar10": "neurodeploy.data.cifar", "cifar100": "neurodeploy.data.cifar",
               "imagenette": "neurodeploy.data.imagenette"}
    if spec.name not in modules:
        raise ValueError(f"unknown dataset {spec.name!r}; known: {', '.join(modules)}")
    return importlib.import_module(modules[spec.name]).load_splits(spec)


__all__ = ["DataSpec", "DatasetError", "SpikeDataset", "load_dataset", "select_limit",
           "per_sample_rng", "encode_images", "DATASETS"]
