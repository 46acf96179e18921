#!/usr/bin/env python3
"""Run a deployment bundle's model.net (written by neurodeploy; needs numpy and Lava only).

    sh run.sh [--data inputs.npz] [--partition P | --board B | --host IP]
              [--loihi-gen N3B3] [--sim] [--check] [--out results.json]

Verifies manifest.json first. Loihi 2 needs Intel's lava-loihi extension and a
SLURM partition/board (INRC) or an Ethernet host; PARTITION, BOARD, NXSDKHOST and
LOIHI_GEN from the environment are used when no option is given. --sim runs
Lava's bit-accurate CPU models (Loihi2SimCfg, fixed_pt) instead.

This file is ``neurodeploy/hardware/runner.py``, copied into every bundle as
``run.py`` next to a copy of ``neurodeploy/sim/samples.py`` (the sample-stream
layout) as ``samples.py``. It imports nothing else from neurodeploy, so a bundle
runs where only numpy and Lava are installed. neurodeploy itself uses the pieces
defined here (the file digest, the manifest check, the SLURM and lava-loihi
probes, the input port and ring buffers, the profiler readings) instead of copies.
A refusal is one line on stderr and exit status 1 (``SystemExit(message)``).
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

if __package__:  # neurodeploy.hardware.runner
    from neurodeploy.sim.samples import classify as classify_outputs
    from neurodeploy.sim.samples import output_windows, sample_stream, stream_steps
else:  # run.py in a bundle, next to its copy of neurodeploy/sim/samples.py
    sys.dont_write_bytecode = True  # no __pycache__ in a checksummed directory
    from samples import classify as classify_outputs
    from samples import output_windows, sample_stream, stream_steps

MANIFEST = "manifest.json"
#: files a bundle cannot run without
REQUIRED_FILES = ("model.net", "encoding.json", "run.py", "run.sh", "samples.py")
#: files run.py writes into the bundle directory (allowed next to the listed ones)
RUN_OUTPUTS = ("results.json", "output_spikes.npy")
DEFAULT_LOIHI_GEN = "N3B3"  # lava.utils.loihi: most INRC Loihi 2 systems are N3B3


def sha256(path):
    """Hex sha256 digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest_files(bundle_dir):
    """The manifest's ``files`` mapping (name -> {"sha256", "bytes"}); raises
    ValueError with the reason when the manifest is missing or malformed."""
    path = os.path.join(bundle_dir, MANIFEST)
    try:
        with open(path) as f:
            files = json.load(f)["files"]
    except OSError as e:
        raise ValueError("%s: %s" % (path, e.strerror or e)) from None
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError("%s: unreadable manifest (%s: %s)" % (path, type(e).__name__, e)) from None
    if not isinstance(files, dict) or not all(isinstance(e, dict) for e in files.values()):
        raise ValueError("%s: unreadable manifest ('files' is not a mapping of file entries)" % path)
    return files


def manifest_problems(bundle_dir, files, required=REQUIRED_FILES, allow_extra=False):
    """What is wrong with a bundle directory against its manifest's ``files``: one
    line per problem (empty when intact) -- required files not listed, listed files
    missing or with another size or sha256, and (unless ``allow_extra``) files
    that are not listed."""
    problems = []
    mf = os.path.join(bundle_dir, MANIFEST)
    for name in required:
        if files and name not in files:
            problems.append("%s: required file %s is not listed" % (mf, name))
    if files and not allow_extra:
        listed = set(files) | {MANIFEST} | set(RUN_OUTPUTS)
        for extra in sorted(n for n in os.listdir(bundle_dir) if n not in listed):
            problems.append("%s: not listed in the manifest (a bundle holds only its listed files)"
                            % os.path.join(bundle_dir, extra))
    for name, entry in files.items():
        p = os.path.join(bundle_dir, name)
        if os.path.basename(name) != name or name in (".", ".."):
            problems.append("%s: entry %r is not a file name in the bundle directory" % (mf, name))
            continue
        if not os.path.isfile(p):
            problems.append("%s: listed in the manifest but missing" % p)
            continue
        size = os.path.getsize(p)
        if size != entry.get("bytes"):
            problems.append("%s: size %d != manifest %s" % (p, size, entry.get("bytes")))
        if sha256(p) != entry.get("sha256"):
            problems.append("%s: sha256 does not match the manifest (file changed or corrupt)" % p)
    return problems


def verify(bundle_dir):
    """Check the bundle against its manifest; return the number of listed files or
    exit with one line naming what is missing or changed (other files, such as a
    data file put next to them, are allowed)."""
    try:
        files = read_manifest_files(bundle_dir)
    except ValueError as e:
        sys.exit("bundle check failed: %s; copy the whole bundle directory" % e)
    problems = manifest_problems(bundle_dir, files, allow_extra=True)
    if problems:
        sys.exit("bundle check failed (missing or changed): " + "; ".join(problems))
    return len(files)


def load_data(path, enc):
    """Inputs (samples, *input_shape_netx, T) and optional labels from an .npz; exits
    with one line naming the file and the expected layout when they do not fit."""
    shape = [int(s) for s in enc["input_shape_netx"]]
    try:
        with np.load(path, allow_pickle=False) as d:
            x, labels = d["inputs"], (d["labels"] if "labels" in d else None)
    except Exception as e:
        sys.exit("--data %s: not an .npz with 'inputs' (samples, *shape, T) and optional 'labels' "
                 "(%s: %s)" % (path, type(e).__name__, str(e).splitlines()[0] if str(e) else ""))
    if x.dtype.kind not in "biu" or x.ndim != len(shape) + 2 or list(x.shape[1:-1]) != shape \
            or x.shape[0] < 1:
        sys.exit("--data %s: inputs %s %s; expected integers of shape (samples >= 1, %s, T) in netx "
                 "(Lava port) order" % (path, x.dtype, x.shape, ", ".join(map(str, shape))))
    if int(x.shape[-1]) != int(enc["reset_interval"]):
        sys.exit("--data %s: %d steps per sample; this bundle was made for %d"
                 % (path, x.shape[-1], int(enc["reset_interval"])))
    if labels is not None and labels.shape != (x.shape[0],):
        sys.exit("--data %s: labels of shape %s; expected one per sample (%d,)"
                 % (path, labels.shape, x.shape[0]))
    return x.astype(np.int32), labels


def loihi_extension_status():
    """(installed, reason): whether Intel's lava-loihi extension can be used, via
    ``lava.utils.loihi.is_installed()`` (it looks for ``lava.utils.loihi2_profiler``).
    Never constructs ``Loihi2HwCfg`` (that crashes without the extension)."""
    try:
        from lava.utils import loihi
    except Exception as e:  # lava-nc missing or not importable on this Python
        return False, ("Lava is not importable on Python %s (%s); lava-nc 0.10.0 needs CPython 3.10"
                       % (sys.version.split()[0], e))
    if not loihi.is_installed():
        return False, ("Intel's lava-loihi extension is not installed "
                       "(lava.utils.loihi.is_installed() is False); it is distributed to INRC members")
    return True, "lava-loihi is installed"


def slurm_controller_available():
    """True when a SLURM controller answers ``sinfo``. (Lava's own
    ``lava.utils.slurm.is_available`` raises FileNotFoundError when ``sinfo`` is
    not installed, so the command is checked here first.)"""
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def connect(partition=None, board=None, host=None, loihi_gen=None, env=None):
    """Point Lava at Loihi 2 (options first, then PARTITION, BOARD, NXSDKHOST,
    LOIHI_GEN from ``env``); return None or the reason it is not possible."""
    env = os.environ if env is None else env
    ok, why = loihi_extension_status()
    if not ok:
        return why
    from lava.utils import loihi

    host = host or env.get("NXSDKHOST")
    try:
        gen = loihi.ChipGeneration(loihi_gen or env.get("LOIHI_GEN") or DEFAULT_LOIHI_GEN)
        if host:
            loihi.use_ethernet_host(host_address=host, loihi_gen=gen)
        elif slurm_controller_available():
            loihi.use_slurm_host(partition=partition or env.get("PARTITION"),
                                 board=board or env.get("BOARD"), loihi_gen=gen)
        else:
            return "no SLURM controller (sinfo) and no Ethernet host (--host or NXSDKHOST)"
    except (ImportError, ValueError) as e:
        return "cannot connect to Loihi 2: %s" % e
    return None


def input_port(net):
    """Where netx feeds a network's input: the input layer's neuron ``a_in`` for a
    file with an input layer, else ``net.inp``."""
    return net.layers[0].neuron.a_in if type(net.layers[0]).__name__ == "Input" else net.inp


def connect_ring_buffers(io, net, target, stream, steps):
    """A RingBuffer source playing ``stream`` (*input_shape_netx, T) into ``target``
    and a sink recording ``steps`` steps of ``net.out``; returns the sink."""
    source = io.source.RingBuffer(data=np.asarray(stream).astype(np.int32))
    sink = io.sink.RingBuffer(shape=net.out.shape, buffer=steps)
    source.s_out.connect(target)
    net.out.connect(sink.a_in)
    return sink


def profiler_callbacks(steps):
    """lava-loihi's power and execution-time profilers for a run of ``steps``:
    (callbacks, power, runtime, note); note says why there are none."""
    try:
        from lava.utils import loihi2_profiler
        power = loihi2_profiler.Loihi2Power(num_steps=steps)
        runtime = loihi2_profiler.Loihi2ExecutionTime()
    except Exception as e:  # profiler API differs between lava-loihi releases
        return [], None, None, "lava-loihi profiler unavailable (%s); no time/energy measured" % e
    return [power, runtime], power, runtime, None


def profiler_readings(power, runtime):
    """Mean time per step (us) and mean total and static power (W) the profilers
    measured, as a dict (keys only for what was measured); raises what the
    profiler raises when its results cannot be read."""
    out = {}
    if runtime is not None:
        out["time_per_step_us"] = float(np.mean(runtime.avg_time_per_step))
    if power is not None:
        out["total_power_w"] = float(np.mean(power.total_power))
        out["static_power_w"] = float(np.mean(power.static_total_power))
    return out


def add_shortcuts(net, path):
    """Residual networks: one Lava Sparse (DelaySparse with a delay) per shortcut of
    ``shortcuts.npz`` (written by neurodeploy's bundle), from its source block's neurons
    into its target block's a_in, as neurodeploy's Lava adapter connects them."""
    from lava.proc.sparse.process import DelaySparse, Sparse
    from scipy.sparse import csr_matrix
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


def run_lava(net_path, stream, steps, reset_interval, sim, shortcuts=None):
    """Run ``net_path`` on ``stream`` for ``steps`` on Loihi 2 (``sim`` False, after
    :func:`connect`) or Lava's CPU models; return (output spikes (*out, steps), info).
    ``shortcuts``: a residual network's ``shortcuts.npz``, added to the chain that
    ``net_path`` holds (:func:`add_shortcuts`)."""
    try:
        from lava.lib.dl import netx
        from lava.magma.core.run_conditions import RunSteps
        from lava.proc import io
    except ImportError as e:
        sys.exit("Lava is not importable here (%s); install lava-nc 0.10 and lava-dl 0.6 (CPython 3.10)" % e)
    net = netx.hdf5.Network(net_config=net_path, reset_interval=int(reset_interval))
    if shortcuts is not None:
        add_shortcuts(net, shortcuts)
    sink = connect_ring_buffers(io, net, input_port(net), stream, steps)
    info, power, runtime = {}, None, None
    if sim:
        from lava.magma.core.run_configs import Loihi2SimCfg
        cfg = Loihi2SimCfg(select_tag="fixed_pt")
    else:
        from lava.magma.core.run_configs import Loihi2HwCfg
        callbacks, power, runtime, note = profiler_callbacks(steps)
        if note:
            info["profiler"] = note
        cfg = Loihi2HwCfg(callback_fxs=callbacks)
    t0 = time.time()
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        out = np.asarray(sink.data.get())
    finally:
        net.stop()
    info["wall_s"] = time.time() - t0
    try:
        info.update(profiler_readings(power, runtime))
    except Exception as e:  # attribute names differ between lava-loihi releases
        info["profiler"] = "results unreadable (%s)" % e
    return out, info


def classify(out, samples, sample_steps, layers, labels=None):
    """Predicted class per sample (the output neuron with most spikes in the
    sample's window of the stream, :mod:`samples`) and the accuracy with labels."""
    windows = output_windows(np.asarray(out), samples, sample_steps, layers)  # (N, *out, P)
    pred = classify_outputs(windows)
    result = {"predictions": pred.tolist()}
    if labels is not None:
        result["accuracy"] = float(np.mean(pred == np.asarray(labels)))
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\nThis file")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="npz with inputs (samples, *input_shape_netx, T) [labels]")
    p.add_argument("--partition")
    p.add_argument("--board")
    p.add_argument("--host")
    p.add_argument("--loihi-gen", default=None)
    p.add_argument("--sim", action="store_true", help="run on Lava's CPU models instead of the chip")
    p.add_argument("--check", action="store_true", help="only verify the bundle's checksums")
    p.add_argument("--out", default="results.json")
    return p.parse_args(argv)


def main(argv=None, bundle_dir=None):
    """``sh run.sh`` in ``bundle_dir`` (default: this file's directory)."""
    args = parse_args(argv)
    here = bundle_dir or os.path.dirname(os.path.abspath(__file__))
    print("bundle verified: %d files match manifest.json" % verify(here))
    if args.check:
        return 0
    with open(os.path.join(here, "encoding.json")) as f:
        enc = json.load(f)
    data = args.data or (os.path.join(here, "inputs.npz") if os.path.exists(os.path.join(here, "inputs.npz"))
                         else None)
    p = int(enc["reset_interval"])
    if data:
        x, labels = load_data(data, enc)
    else:
        x, labels = np.zeros([1] + list(enc["input_shape_netx"]) + [p], dtype=np.int32), None
        print("no --data: running one all-zero sample of %d steps (timing only)" % p)
    samples, layers = x.shape[0], int(enc["neuron_layers"])
    steps = stream_steps(samples, p, layers)
    if not args.sim:
        why = connect(args.partition, args.board, args.host, args.loihi_gen)
        if why:
            sys.exit("no Loihi 2 chip is reachable: %s. Re-run with --sim for Lava's CPU models." % why)
    residual = os.path.exists(os.path.join(here, "shortcuts.npz"))  # netx builds the chain alone
    out, info = run_lava(os.path.join(here, "chain.net" if residual else "model.net"), sample_stream(x),
                         steps, p, args.sim, os.path.join(here, "shortcuts.npz") if residual else None)
    result = {"target": "lava-cpu-fixed_pt" if args.sim else "loihi2", "samples": samples,
              "steps_per_sample": p}
    result.update(info)
    result.update(classify(out, samples, p, layers, labels))
    np.save(os.path.join(here, "output_spikes.npy"), out)
    with open(args.out if os.path.isabs(args.out) else os.path.join(here, args.out), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "predictions"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
