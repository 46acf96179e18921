"""scikit-learn's handwritten digits: the offline default dataset.

1797 8x8 grey images, values 0..16, 10 classes, shipped inside scikit-learn
(``sklearn.datasets.load_digits``; nothing to download). Input (64,), intensity
pixel / 16. The train/test split is fixed, seeded and stratified
(``train_test_split(stratify=labels, random_state=seed, test_size=test_fraction)``):
test_fraction 0.2 gives 1437 train / 360 test.
"""
from __future__ import annotations

import numpy as np

from neurodeploy.data import TEST, TRAIN, DataSpec, SpikeDataset, encode_images, select_limit

INPUT_SHAPE = (64,)
NUM_CLASSES = 10
MAX_VALUE = 16


def split_indices(labels: np.ndarray, test_fraction: float, seed: int):
    """(train, test) indices into ``load_digits()``: stratified, seeded."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(labels)), test_size=test_fraction, random_state=seed,
                            stratify=labels)


def load_splits(spec: DataSpec):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.data.astype(np.uint8)  # (1797, 64), 0..16
    labels = d.target.astype(np.int64)
    splits = []
    for split, idx in zip((TRAIN, TEST), split_indices(labels, spec.test_fraction, spec.seed)):
        idx = idx[select_limit(labels[idx], spec.limit)]
        x = images[idx]

        def encode(i, x=x, ids=idx, split=split):
            # per-sample random stream keyed by the index in load_digits()
            return encode_images(x, i, spec, split, scale=MAX_VALUE, sample_ids=ids)

        splits.append(SpikeDataset(encode, labels[idx], INPUT_SHAPE, NUM_CLASSES, spec.steps,
                                   name=f"digits/{'train' if split == TRAIN else 'test'}"))
    return tuple(splits)
