"""neurodeploy's netx extension for residual networks (``docs/residual.md``).

A block whose neurons also sum shortcuts is stored as the block netx knows, with
two changes:

- its ``type`` is ``conv_res`` or ``dense_res`` (instead of ``conv`` / ``dense``),
  so that a reader that knows only netx's chains does not build the block without
  its shortcuts (lava-dl's netx does not build these types);
- a group ``shortcut/<k>/`` (k = 0, 1, ...) per shortcut into it, with datasets
  ``source`` (int64: index of the source block in ``layer/``), ``weight``
  (float32 integers: (out, in) for a dense shortcut over the flattened torch-order
  neurons, (out_ch, in_ch, kH, kW) for a conv shortcut), ``stride`` and
  ``padding`` (int64 (H, W), conv only) and ``delay`` (int64, steps beyond the
  synapse's own one, as netx's ``delay``).

Everything else in the block, and every other block, is plain netx.
"""
from __future__ import annotations

import h5py
import numpy as np

RESIDUAL_TYPES = {"conv_res": "conv", "dense_res": "dense"}


def write_shortcuts(f: h5py.File, network) -> None:
    """Add the shortcut groups of ``network`` (whose block indices are the file's)
    to a file whose blocks are written, and mark their target blocks."""
    for target in sorted({sc.target for sc in network.shortcuts}):
        g = f[f"layer/{target}"]
        kind = g["type"][0].decode("ascii")
        del g["type"]
        g.create_dataset("type", (1,), "S10", [f"{kind}_res".encode("ascii")])
        for k, sc in enumerate(network.shortcuts_into(target)):
            s = g.create_group(f"shortcut/{k}")
            s.create_dataset("source", data=np.int64(sc.source))
            s.create_dataset("weight", data=np.asarray(sc.weight).astype(np.float32))
            if sc.conv:
                s.create_dataset("stride", data=np.array(sc.stride, dtype=np.int64))
                s.create_dataset("padding", data=np.array(sc.padding, dtype=np.int64))
            s.create_dataset("delay", data=np.int64(sc.delay))


def read_shortcuts(g: h5py.Group, target: int, where: str, error):
    """The shortcuts stored in block group ``g`` (index ``target``) -> a list of
    :class:`neurodeploy.network.Shortcut`; ``error``: the exception class for a
    malformed group (naming ``where`` and the dataset)."""
    from neurodeploy.network import Shortcut

    if "shortcut" not in g:
        raise error(f"{where}: a residual block needs a 'shortcut' group")
    found = []
    keys = sorted(g["shortcut"].keys(), key=lambda k: int(k) if k.isdigit() else -1)
    if [k for k in keys if k.isdigit()] != [str(i) for i in range(len(keys))] or not keys:
        raise error(f"{where}: shortcut groups must be named 0..N-1, found {keys}")
    for k in keys:
        s = g["shortcut"][k]
        w_ = f"{where}/shortcut/{k}"
        for key in ("source", "weight", "delay"):
            if key not in s:
                raise error(f"{w_}: missing dataset '{key}'")
        weight = np.asarray(s["weight"][()], dtype=np.float64)
        if not np.all(np.isfinite(weight)) or not np.array_equal(np.round(weight), weight):
            raise error(f"{w_}: weight must hold integers (Loihi fixed point)")
        conv = weight.ndim == 4
        if conv and ("stride" not in s or "padding" not in s):
            raise error(f"{w_}: a conv shortcut needs 'stride' and 'padding'")
        try:
            found.append(Shortcut(
                source=int(np.asarray(s["source"][()]).reshape(-1)[0]), target=target,
                weight=weight.astype(np.int64),
                stride=tuple(np.asarray(s["stride"][()]).reshape(-1)) if conv else (1, 1),
                padding=tuple(np.asarray(s["padding"][()]).reshape(-1)) if conv else (0, 0),
                delay=int(np.asarray(s["delay"][()]).reshape(-1)[0])))
        except ValueError as e:
            raise error(f"{w_}: {e}") from None
    return found
