"""A self-contained deployment directory to copy to an INRC host and run there
with one command (``sh run.sh``):

    model.net       the netx network
    encoding.json   how inputs are fed: input shape (torch and netx order), time
                    steps per sample, reset interval, value kind, data file layout
    run.py          runs the network on Loihi 2 (lava-loihi, Loihi2HwCfg) or, with
                    --sim, on Lava's bit-accurate CPU models; needs only numpy and
                    Lava (not neurodeploy); checks the manifest first. A copy of
                    :mod:`neurodeploy.hardware.runner`.
    samples.py      the sample-stream layout run.py feeds and reads (a copy of
                    :mod:`neurodeploy.sim.samples`)
    run.sh          ``python3 run.py "$@"`` from the bundle directory
    inputs.npz      optional sample data (inputs, labels)
    manifest.json   versions of the tools that made it, and the sha256 of every file

:func:`verify_bundle` checks the manifest (run.py does the same check itself).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from neurodeploy.errors import InputError
from neurodeploy.hardware import runner
from neurodeploy.hardware.runner import MANIFEST, sha256
from neurodeploy.sim import samples

BUNDLE_FORMAT = 2
VERSIONED_PACKAGES = ("neurodeploy", "numpy", "h5py", "torch", "lava-nc", "lava-dl", "lava-loihi")


class BundleError(InputError):
    """A bundle cannot be written, or fails verification (the message names the file)."""


def package_versions() -> Dict[str, Optional[str]]:
    """Installed versions of the packages that matter for reproducing a run
    (None: not installed)."""
    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def input_encoding(network, steps: int, reset_interval: Optional[int] = None, kind: str = "spikes",
                   extra: Optional[dict] = None) -> dict:
    """The encoding.json content: how a sample becomes the input stream."""
    shape = list(network.input_shape)
    enc = {
        "input_shape_torch": shape,
        "input_shape_netx": shape[::-1],
        "steps_per_sample": int(steps),
        "reset_interval": int(reset_interval if reset_interval is not None else steps),
        "kind": kind,  # 'spikes' (0/1) or 'graded' (integers)
        "feeds": "input layer's neuron a_in" if network.has_input_layer else "network inp port",
        "neuron_layers": len(network.neuron_layers),
        "stream_layout": ("samples back to back after P-1 zero steps, one zero step at the end, state "
                          "reset every P steps; run (N+1)P + L-1 steps; sample k's output is steps "
                          "(k+1)P + L-1 ... (k+2)P + L-2 (neurodeploy.sim.samples)"),
        "data_file": {"format": "npz", "inputs": "int (samples, *input_shape_netx, steps_per_sample): "
                                                  "netx (Lava port) order, as neurodeploy.layout",
                      "labels": "int (samples,), optional"},
        "decode": "class = argmax over output neurons of spike counts per sample",
    }
    if extra:
        enc.update(extra)
    return enc


def write_bundle(net_path: os.PathLike, out_dir: os.PathLike, steps: Optional[int] = None,
                 inputs: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
                 encoding: Optional[dict] = None, hardware: Optional[dict] = None,
                 overwrite: bool = False) -> Path:
    """Write the bundle for ``net_path`` into ``out_dir`` and return it.

    steps: time steps per sample (default: the inputs' T, else 100 with a note);
    inputs/labels: optional sample data copied as inputs.npz; encoding: extra
    encoding fields (e.g. the pipeline's encoder settings); hardware: a mapping
    report dict stored in the manifest.
    """
    from neurodeploy.checks import OutputDirError, check_labels
    from neurodeploy.export.netx import read_netx

    net_path, out = Path(net_path), Path(out_dir)
    network = read_netx(net_path)  # validates the file before anything is written
    if inputs is not None:  # integers only, nothing rounded: neurodeploy.checks
        from neurodeploy.layout import check_samples
        inputs = check_samples(inputs, network, "bundle inputs", allow_single=False)
        labels = check_labels(labels, inputs.shape[0], int(np.prod(network.output_shape)), "labels")
    if steps is not None and int(steps) < 1:
        raise BundleError(f"steps: expected >= 1, got {steps}")
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputDirError(f"{out}: directory exists and is not empty (use --force to replace a bundle)")
        if not (out / MANIFEST).exists():
            raise OutputDirError(f"{out}: not empty and not a bundle (no {MANIFEST}); refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if steps is None:
        steps = int(inputs.shape[-1]) if inputs is not None else 100
    shutil.copyfile(net_path, out / "model.net")
    kind = "spikes"
    if inputs is not None and (int(inputs.min()) < 0 or int(inputs.max()) > 1):
        kind = "graded"
    (out / "encoding.json").write_text(json.dumps(input_encoding(network, steps, kind=kind, extra=encoding),
                                                  indent=2) + "\n")
    if network.shortcuts:  # residual: netx builds the chain, run.py adds the shortcuts
        _write_residual_parts(network, out)
    if inputs is not None:
        arrays = {"inputs": inputs.astype(np.int32)}
        if labels is not None:
            arrays["labels"] = labels
        np.savez_compressed(out / "inputs.npz", **arrays)
    shutil.copyfile(runner.__file__, out / "run.py")
    shutil.copyfile(samples.__file__, out / "samples.py")
    (out / "run.sh").write_text(RUN_SH)
    os.chmod(out / "run.sh", os.stat(out / "run.sh").st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    manifest = {
        "bundle_format": BUNDLE_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "network": {"name": network.name, "source": str(net_path), "input_shape": list(network.input_shape),
                    "output_shape": list(network.output_shape),
                    "blocks": [type(b).__name__.lower() for b in network.layers]},
        "versions": package_versions(),
        "run": "sh run.sh [--data inputs.npz] [--partition P | --board B | --host IP] [--sim]",
        "files": {name: {"sha256": sha256(out / name), "bytes": (out / name).stat().st_size}
                  for name in files},
    }
    if hardware is not None:
        manifest["hardware"] = hardware
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _write_residual_parts(network, out: Path) -> None:
    """For a residual network: ``chain.net`` (its blocks without the shortcuts, which
    lava-dl's netx builds) and ``shortcuts.npz`` (each shortcut's integer matrix in
    netx order, CSR, with its source and target among netx's ``net.layers``, the
    target's port shape and its delay), from which run.py adds a Lava
    Sparse / DelaySparse per shortcut, as neurodeploy's Lava adapter does."""
    from neurodeploy.export.netx import write_netx
    from neurodeploy.lava_adapter import shortcut_matrix
    from neurodeploy.layout import netx_shape
    from neurodeploy.network import holds_neurons

    write_netx(network.chain(), out / "chain.net")
    pos = {}
    for i, b in enumerate(network.layers):
        if holds_neurons(b):
            pos[i] = len(pos)
    arrays = {"count": np.array(len(network.shortcuts))}
    for k, sc in enumerate(network.shortcuts):
        m = shortcut_matrix(network, sc)
        rows, cols = np.nonzero(m)
        arrays[f"{k}/rows"], arrays[f"{k}/cols"] = rows.astype(np.int64), cols.astype(np.int64)
        arrays[f"{k}/values"] = m[rows, cols].astype(np.int64)
        arrays[f"{k}/shape"] = np.array(m.shape, dtype=np.int64)
        arrays[f"{k}/ends"] = np.array([pos[sc.source], pos[sc.target], sc.delay], dtype=np.int64)
        arrays[f"{k}/target_shape"] = np.array(netx_shape(network.layers[sc.target].shape), dtype=np.int64)
    np.savez_compressed(out / "shortcuts.npz", **arrays)


@dataclass(frozen=True)
class BundleCheck:
    """Result of :func:`verify_bundle`: ``problems`` is empty when the bundle is intact."""

    path: str
    files: int
    problems: tuple

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(bundle_dir: os.PathLike, strict: bool = False) -> BundleCheck:
    """Check every file listed in the manifest exists with its sha256 and size,
    and that the required files are listed. ``strict`` raises :class:`BundleError`
    on the first problem list instead of returning it."""
    d = Path(bundle_dir)
    try:
        files = runner.read_manifest_files(d)
        problems: List[str] = runner.manifest_problems(d, files)
    except ValueError as e:
        files, problems = {}, [str(e) if (d / MANIFEST).exists() else f"{d / MANIFEST}: missing"]
    check = BundleCheck(path=str(d), files=len(files), problems=tuple(problems))
    if strict and problems:
        raise BundleError("bundle verification failed:\n  " + "\n  ".join(problems))
    return check


RUN_SH = """#!/bin/sh
# Run this neurodeploy bundle: on Loihi 2 when lava-loihi and a system are
# reachable, else say why (add --sim for Lava's bit-accurate CPU models).
cd "$(dirname "$0")" || exit 1
exec "${PYTHON:-python3}" run.py "$@"
"""
