"""Datasets as spike trains, from local files in their published formats.

``load_dataset(DataSpec) -> (train, test)``: each a :class:`SpikeDataset` that keeps
its raw data compact and encodes on the fly, per batch. Encoding is deterministic
per sample: sample i of a split always gets the same spikes (its random stream is
seeded by (seed, split, i)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Tuple

import numpy as np


class DatasetError(FileNotFoundError):
    """A dataset directory or file is missing or malformed."""


@dataclass(frozen=True)
class DataSpec:
    """name: digits | fashion_mnist | nmnist | shd; dir: local directory with the
    published files; encoding: rate | latency (images); steps: time steps per sample;
    window: event data only, the time span binned into ``steps`` (N-MNIST: us,
    SHD: s; None: the dataset's default); test_fraction: digits only; limit: samples
    per split."""

    name: str = "digits"
    dir: Optional[str] = None
    encoding: str = "rate"
    steps: int = 20
    window: Optional[float] = None
    test_fraction: float = 0.2
    seed: int = 0
    limit: Optional[int] = None


class SpikeDataset:
    """A split: ``len``, ``input_shape``, ``num_classes``, ``labels``; ``encode(indices)``
    -> (n, steps, *input_shape) float32 spikes; ``batches(...)`` -> torch tensors."""

    def __init__(self, encode_fn: Callable[[np.ndarray], np.ndarray], labels: np.ndarray,
                 input_shape: Tuple[int, ...], num_classes: int, steps: int):
        self._encode = encode_fn
        self.labels = np.asarray(labels, dtype=np.int64)
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)
        self.steps = int(steps)

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) == 0:
            return np.zeros((0, self.steps, *self.input_shape), dtype=np.float32)
        return self._encode(idx)

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator:
        import torch

        order = np.arange(len(self))
        if shuffle:
            np.random.default_rng(seed).shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield torch.from_numpy(self.encode(idx)), torch.from_numpy(self.labels[idx])


def per_sample_rng(seed: int, split: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(split), int(index)])


def encode_images(images: np.ndarray, idx: np.ndarray, spec: DataSpec, split: int) -> np.ndarray:
    """Images (N, *shape) in [0, 1] (selected by idx) -> spikes with spec's encoding."""
    from neurodeploy.data.encoding import latency_encode, rate_encode

    x = images[idx]
    if spec.encoding == "latency":
        return latency_encode(x, spec.steps)
    if spec.encoding == "rate":
        return np.concatenate([rate_encode(x[k:k + 1], spec.steps, per_sample_rng(spec.seed, split, i))
                               for k, i in enumerate(idx)])
    raise ValueError(f"unknown encoding {spec.encoding!r} (rate, latency)")


def limit_split(n: int, limit: Optional[int]) -> np.ndarray:
    return np.arange(n if limit is None else min(n, limit))


def load_dataset(spec: DataSpec):
    """(train, test) :class:`SpikeDataset` for ``spec``."""
    if spec.name == "digits":
        from neurodeploy.data.digits import load_digits_splits
        return load_digits_splits(spec)
    loaders = {"fashion_mnist": "neurodeploy.data.fashion_mnist",
               "nmnist": "neurodeploy.data.nmnist", "shd": "neurodeploy.data.shd"}
    if spec.name not in loaders:
        raise ValueError(f"unknown dataset {spec.name!r}; known: digits, {', '.join(loaders)}")
    import importlib
    try:
        module = importlib.import_module(loaders[spec.name])
    except ModuleNotFoundError:
        raise NotImplementedError(f"the {spec.name} loader is not available in this build") from None
    return module.load_splits(spec)
