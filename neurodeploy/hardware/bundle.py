"""A self-contained deployment directory to copy to an INRC host and run there
with one command (``sh run.sh``):

    model.net       the netx network
    encoding.json   how inputs are fed: input shape (torch and netx order), time
                    steps per sample, reset interval, value kind, data file layout
    run.py          runs the network on Loihi 2 (lava-loihi, Loihi2HwCfg) or, with
                    --sim, on Lava's bit-accurate CPU models; needs only numpy and
                    Lava (not neurodeploy); checks the manifest first
    run.sh          ``python3 run.py "$@"`` from the bundle directory
    inputs.npz      optional sample data (inputs, labels)
    manifest.json   versions of the tools that made it, and the sha256 of every file

:func:`verify_bundle` checks the manifest (run.py does the same check itself).
"""
from __future__ import annotations

import hashlib
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

from neurodeploy.errors import InputError, OutputError

MANIFEST = "manifest.json"
#: files run.py writes into the bundle directory (allowed next to the listed ones)
RUN_OUTPUTS = ("results.json", "output_spikes.npy")
BUNDLE_FORMAT = 1
VERSIONED_PACKAGES = ("neurodeploy", "numpy", "h5py", "torch", "lava-nc", "lava-dl", "lava-loihi")


class BundleError(InputError):
    """A bundle cannot be written, or fails verification (the message names the file)."""


def sha256(path: os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    from neurodeploy.export.netx import read_netx

    from neurodeploy.checks import OutputDirError, check_labels

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
    (out / "run.py").write_text(RUN_PY)
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
    problems: List[str] = []
    mf = d / MANIFEST
    if not mf.exists():
        problems.append(f"{mf}: missing")
        files = {}
    else:
        try:
            files = json.loads(mf.read_text())["files"]
            if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
                raise TypeError("'files' is not a mapping of file entries")
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"{mf}: unreadable manifest ({type(e).__name__}: {e})")
            files = {}
    for required in ("model.net", "encoding.json", "run.py", "run.sh"):
        if files and required not in files:
            problems.append(f"{mf}: required file {required} is not listed")
    if files:
        listed = set(files) | {MANIFEST} | set(RUN_OUTPUTS)
        for extra in sorted(p.name for p in d.iterdir() if p.name not in listed):
            problems.append(f"{d / extra}: not listed in the manifest (a bundle holds only its listed files)")
    for name, entry in files.items():
        p = d / name
        if Path(name).name != name or name in (".", ".."):
            problems.append(f"{mf}: entry {name!r} is not a file name in the bundle directory")
            continue
        if not p.is_file():
            problems.append(f"{p}: listed in the manifest but missing")
            continue
        if p.stat().st_size != entry.get("bytes"):
            problems.append(f"{p}: size {p.stat().st_size} != manifest {entry.get('bytes')}")
        if sha256(p) != entry.get("sha256"):
            problems.append(f"{p}: sha256 does not match the manifest (file changed or corrupt)")
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

RUN_PY = r'''#!/usr/bin/env python3
"""Run this bundle's model.net (written by neurodeploy; needs numpy and Lava only).

    sh run.sh [--data inputs.npz] [--partition P | --board B | --host IP]
              [--loihi-gen N3B3] [--sim] [--check] [--out results.json]

Verifies manifest.json first. Loihi 2 needs Intel's lava-loihi extension and a
SLURM partition/board (INRC) or an Ethernet host; PARTITION, BOARD, NXSDKHOST and
LOIHI_GEN from the environment are used when no option is given. --sim runs
Lava's bit-accurate CPU models (Loihi2SimCfg, fixed_pt) instead.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

try:
    import numpy as np
except ImportError:
    sys.exit("run.py: numpy is not installed for %s; install it (python3 -m pip install numpy) "
             "or set PYTHON to an interpreter that has numpy and Lava" % sys.executable)

HERE = os.path.dirname(os.path.abspath(__file__))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def add_shortcuts(net, path):
    """Residual networks: one Lava Sparse (DelaySparse with a delay) per shortcut,
    from its source block's neurons into its target block's a_in."""
    from scipy.sparse import csr_matrix
    from lava.proc.sparse.process import DelaySparse, Sparse
    z = np.load(path)
    for k in range(int(z["count"])):
        shape = tuple(int(v) for v in z["%d/shape" % k])
        m = csr_matrix((z["%d/values" % k], (z["%d/rows" % k], z["%d/cols" % k])), shape=shape)
        src, tgt, delay = (int(v) for v in z["%d/ends" % k])
        if delay:
            d = m.copy()
            d.data[:] = delay
            syn = DelaySparse(weights=m, delays=d, num_message_bits=0)
        else:
            syn = Sparse(weights=m, num_message_bits=0)
        s_out = net.layers[src].neuron.s_out
        (s_out if len(s_out.shape) == 1 else s_out.flatten()).connect(syn.s_in)
        tshape = tuple(int(v) for v in z["%d/target_shape" % k])
        (syn.a_out if len(tshape) == 1 else syn.a_out.reshape(tshape)).connect(net.layers[tgt].neuron.a_in)


def verify():
    path = os.path.join(HERE, "manifest.json")
    try:
        with open(path) as f:
            files = json.load(f)["files"]
        entries = [(n, e["sha256"]) for n, e in files.items()]
    except OSError as e:
        sys.exit("bundle check failed: %s: %s; copy the whole bundle directory" % (path, e.strerror or e))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        sys.exit("bundle check failed: %s: not a bundle manifest (%s: %s)" % (path, type(e).__name__, e))
    bad = [n for n, h in entries
           if not os.path.isfile(os.path.join(HERE, n)) or sha256(os.path.join(HERE, n)) != h]
    if bad:
        sys.exit("bundle check failed (missing or changed): " + ", ".join(bad))
    return len(files)


def slurm_available():
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def connect(args):
    """Point Lava at Loihi 2; return None or the reason it is not possible."""
    try:
        from lava.utils import loihi
    except Exception as e:
        return "Lava is not importable here (%s)" % e
    if not loihi.is_installed():
        return "Intel's lava-loihi extension is not installed (lava.utils.loihi.is_installed() is False)"
    gen = loihi.ChipGeneration(args.loihi_gen or os.environ.get("LOIHI_GEN") or "N3B3")
    host = args.host or os.environ.get("NXSDKHOST")
    try:
        if host:
            loihi.use_ethernet_host(host_address=host, loihi_gen=gen)
        elif slurm_available():
            loihi.use_slurm_host(partition=args.partition or os.environ.get("PARTITION"),
                                 board=args.board or os.environ.get("BOARD"), loihi_gen=gen)
        else:
            return "no SLURM controller (sinfo) and no Ethernet host (--host or NXSDKHOST)"
    except (ImportError, ValueError) as e:
        return "cannot connect to Loihi 2: %s" % e
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="npz with inputs (samples, *input_shape_netx, T) [labels]")
    p.add_argument("--partition"); p.add_argument("--board"); p.add_argument("--host")
    p.add_argument("--loihi-gen", default=None)
    p.add_argument("--sim", action="store_true", help="run on Lava's CPU models instead of the chip")
    p.add_argument("--check", action="store_true", help="only verify the bundle's checksums")
    p.add_argument("--out", default="results.json")
    args = p.parse_args()
    n = verify()
    print("bundle verified: %d files match manifest.json" % n)
    if args.check:
        return 0
    with open(os.path.join(HERE, "encoding.json")) as f:
        enc = json.load(f)
    data = args.data or (os.path.join(HERE, "inputs.npz") if os.path.exists(os.path.join(HERE, "inputs.npz"))
                         else None)
    t = int(enc["steps_per_sample"])
    if data:
        try:
            with np.load(data, allow_pickle=False) as d:
                x, labels = d["inputs"], (d["labels"] if "labels" in d else None)
        except Exception as e:
            sys.exit("--data %s: not an .npz with 'inputs' (samples, *shape, T) and optional 'labels' "
                     "(%s: %s)" % (data, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
        if x.dtype.kind not in "biu" or x.ndim != len(enc["input_shape_netx"]) + 2 \
                or list(x.shape[1:-1]) != list(enc["input_shape_netx"]) or x.shape[0] < 1:
            sys.exit("--data %s: inputs %s %s; expected integers of shape (samples >= 1, %s, T) in netx "
                     "(Lava port) order" % (data, x.dtype, x.shape, ", ".join(map(str, enc["input_shape_netx"]))))
    else:
        x, labels = np.zeros([1] + list(enc["input_shape_netx"]) + [t], dtype=np.int32), None
        print("no --data: running one all-zero sample of %d steps (timing only)" % t)
    x = np.asarray(x)
    samples, t = x.shape[0], x.shape[-1]
    if t != int(enc["reset_interval"]):
        sys.exit("data has %d steps per sample; this bundle was made for %d" % (t, int(enc["reset_interval"])))
    layers = int(enc["neuron_layers"])
    if list(x.shape[1:-1]) != list(enc["input_shape_netx"]):
        sys.exit("data inputs have shape %s; this bundle takes (samples, %s, T) in netx (Lava port) order"
                 % (list(x.shape), ", ".join(map(str, enc["input_shape_netx"]))))
    # the stream layout of neurodeploy.sim.samples: each sample runs from a fresh state
    zeros = lambda m: np.zeros(x.shape[1:-1] + (m,), dtype=np.int32)  # noqa: E731
    stream = np.concatenate([zeros(t - 1)] + list(x) + [zeros(1)], axis=-1).astype(np.int32)
    steps = (samples + 1) * t + layers - 1

    if not args.sim:
        why = connect(args)
        if why:
            sys.exit("no Loihi 2 chip is reachable: %s. Re-run with --sim for Lava's CPU models." % why)
    try:
        from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.proc import io
    except ImportError as e:
        sys.exit("Lava is not importable here (%s); install lava-nc 0.10 and lava-dl 0.6 (CPython 3.10)" % e)
    residual = os.path.exists(os.path.join(HERE, "shortcuts.npz"))
    net = netx.hdf5.Network(net_config=os.path.join(HERE, "chain.net" if residual else "model.net"),
                            reset_interval=int(enc["reset_interval"]))
    if residual:
        add_shortcuts(net, os.path.join(HERE, "shortcuts.npz"))
    target = net.layers[0].neuron.a_in if type(net.layers[0]).__name__ == "Input" else net.inp
    source = io.source.RingBuffer(data=stream)
    sink = io.sink.RingBuffer(shape=net.out.shape, buffer=steps)
    source.s_out.connect(target)
    net.out.connect(sink.a_in)
    result = {"target": "lava-cpu-fixed_pt" if args.sim else "loihi2", "samples": samples, "steps_per_sample": t}
    callbacks, power, runtime = [], None, None
    if args.sim:
        from lava.magma.core.run_configs import Loihi2SimCfg
        cfg = Loihi2SimCfg(select_tag="fixed_pt")
    else:
        from lava.magma.core.run_configs import Loihi2HwCfg
        try:
            from lava.utils import loihi2_profiler
            power = loihi2_profiler.Loihi2Power(num_steps=steps)
            runtime = loihi2_profiler.Loihi2ExecutionTime()
            callbacks = [power, runtime]
        except Exception as e:
            result["profiler"] = "unavailable (%s)" % e
        cfg = Loihi2HwCfg(callback_fxs=callbacks)
    t0 = time.time()
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        out = np.asarray(sink.data.get())
    finally:
        net.stop()
    result["wall_s"] = time.time() - t0
    starts = (np.arange(samples) + 1) * t + layers - 1
    windows = out.reshape(-1, steps)[:, starts[:, None] + np.arange(t)[None, :]]  # (neurons, N, P)
    pred = windows.sum(-1).argmax(0)
    result["predictions"] = pred.tolist()
    if labels is not None:
        result["accuracy"] = float(np.mean(pred == np.asarray(labels)))
    try:
        if runtime is not None:
            result["time_per_step_us"] = float(np.mean(runtime.avg_time_per_step))
        if power is not None:
            result["total_power_w"] = float(np.mean(power.total_power))
            result["static_power_w"] = float(np.mean(power.static_total_power))
    except Exception as e:
        result["profiler"] = "results unreadable (%s)" % e
    np.save(os.path.join(HERE, "output_spikes.npy"), out)
    with open(args.out if os.path.isabs(args.out) else os.path.join(HERE, args.out), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "predictions"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
