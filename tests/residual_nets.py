"""Random residual integer networks for the simulator and Lava tests."""

import numpy as np

from neurodeploy.network import Conv, CubaNeuron, Dense, Flatten, Network, Shortcut, aligned_delay


def _w(rng, shape, sign="mixed"):
    w = 2 * rng.integers(-90, 110, size=shape)
    if sign == "exc":
        w = np.abs(w)
    return w


def _neuron(rng, per_channel=None):
    if per_channel:
        return CubaNeuron(tuple(int(v) for v in rng.integers(1, 4097, per_channel)),
                          tuple(int(v) for v in rng.integers(0, 4096, per_channel)),
                          tuple(int(v) for v in rng.integers(50, 400, per_channel)))
    return CubaNeuron(int(rng.choice([4096, int(rng.integers(1, 4097))])), int(rng.integers(0, 4096)),
                      int(rng.integers(50, 400)))


def random_conv_resnet(seed: int, blocks: int = 2, bias: bool = False, aligned: bool = False) -> Network:
    """A conv stem, ``blocks`` residual blocks (identity or strided projection
    shortcuts; delays aligned, or aligned or one step longer), flatten and a dense
    output layer."""
    rng = np.random.default_rng(seed)
    c, h = int(rng.integers(2, 4)), int(rng.integers(4, 7))
    layers = [Conv(_w(rng, (c, 1, 3, 3)), _neuron(rng), (c, h, h), padding=(1, 1),
                   bias=rng.integers(-200, 200, c) if bias else None)]
    shortcuts = []
    for _ in range(blocks):
        src = len(layers) - 1
        project = bool(rng.integers(0, 2)) and h > 2
        c2, stride = (c + 1, 2) if project else (c, 1)
        h2 = (h - 1) // stride + 1
        layers.append(Conv(_w(rng, (c2, c, 3, 3)), _neuron(rng, c2 if rng.integers(0, 2) else None),
                           (c2, h2, h2), stride=(stride, stride), padding=(1, 1)))
        layers.append(Conv(_w(rng, (c2, c2, 3, 3)), _neuron(rng), (c2, h2, h2), padding=(1, 1),
                           bias=rng.integers(-200, 200, c2) if bias else None))
        weight = (_w(rng, (c2, c, 1, 1)) if project else
                  np.eye(c, dtype=np.int64).reshape(c, c, 1, 1) * 2 * int(rng.integers(20, 120)))
        delay = aligned_delay(layers, src, len(layers) - 1) + (0 if aligned else int(rng.integers(0, 2)))
        shortcuts.append(Shortcut(src, len(layers) - 1, weight, stride=(stride, stride), delay=delay))
        c, h = c2, h2
    layers.append(Flatten((c, h, h)))
    layers.append(Dense(_w(rng, (4, c * h * h)), _neuron(rng)))
    return Network(layers, (1, layers[0].shape[1], layers[0].shape[2]), shortcuts=tuple(shortcuts))


def random_dense_resnet(seed: int, blocks: int = 2) -> Network:
    """Dense blocks with identity or projection shortcuts (and one reaching over two
    blocks when there are several)."""
    rng = np.random.default_rng(seed)
    n_in, n = 6, int(rng.integers(4, 9))
    layers = [Dense(_w(rng, (n, n_in)), _neuron(rng))]
    shortcuts = []
    for _ in range(blocks):
        src = len(layers) - 1
        n2 = n if rng.integers(0, 2) else n + 2
        layers.append(Dense(_w(rng, (n2, n)), _neuron(rng)))
        layers.append(Dense(_w(rng, (n2, n2)), _neuron(rng)))
        weight = (np.eye(n, dtype=np.int64) * 2 * int(rng.integers(20, 120)) if n2 == n
                  else _w(rng, (n2, n)))
        shortcuts.append(Shortcut(src, len(layers) - 1, weight, delay=aligned_delay(layers, src, len(layers) - 1)))
        n = n2
    if blocks > 1:  # a long shortcut from the stem over every block
        w = _w(rng, (n, layers[0].num_neurons))
        shortcuts.append(Shortcut(0, len(layers) - 1, w, delay=aligned_delay(layers, 0, len(layers) - 1)))
    layers.append(Dense(_w(rng, (3, n)), _neuron(rng)))
    return Network(layers, (n_in,), shortcuts=tuple(shortcuts))
