"""scikit-learn's handwritten digits (1797 8x8 images, values 0..16, 10 classes),
shipped inside scikit-learn: the offline default. Fixed, seeded, stratified split."""
from __future__ import annotations

import numpy as np

from neurodeploy.data import DataSpec, SpikeDataset, encode_images, limit_split

INPUT_SHAPE = (64,)


def load_digits_splits(spec: DataSpec):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = (d.data / 16.0).astype(np.float32)  # (1797, 64) in [0, 1]
    idx_train, idx_test = train_test_split(np.arange(len(d.target)), test_size=spec.test_fraction,
                                           random_state=spec.seed, stratify=d.target)
    splits = []
    for split, idx in enumerate((idx_train, idx_test)):
        idx = idx[limit_split(len(idx), spec.limit)]
        x = images[idx]
        splits.append(SpikeDataset(lambda i, x=x, split=split: encode_images(x, i, spec, split),
                                   d.target[idx], INPUT_SHAPE, 10, spec.steps))
    return tuple(splits)
