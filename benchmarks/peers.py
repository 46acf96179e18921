"""neurodeploy's training step against the SNN libraries users would pick instead.

Workloads (forward + backward of one training step, inputs and weights prepared before):

- ``linear_lif``: the Open Neuromorphic framework benchmark's workload: one Linear(n, n)
  + LIF layer, T = 500 steps, batch 16, 5 % input spikes, loss = sum of the output spikes;
  n = 4096 on CPU and 16384 on a GPU by default (``--n``).
- ``shd``: the sparse spiking gradient descent paper's SHD network, 700-200-200-20
  LIF layers, T = 500, batch 256, 2 % input spikes, cross-entropy over output spike counts.

Every library runs the same neuron (LIF: tau_mem = 10 steps, threshold 1, reset to 0,
no synaptic current) on the same weights times one gain per library, chosen by bisection
so that its first layer fires at ~5 % (each library's rate is in the JSON). Libraries:
neurodeploy (dense BPTT, and the sparse backward at the surrogate band of
``examples/digits.yaml``, the pipeline's default), snnTorch (``Leaky``), Norse
(``LIFBoxCell``), lava-dl slayer (``block.cuba.Dense``, current_decay 1) and SpikingJelly
(``LIFNode``, multi-step, torch backend on CPU, cupy/triton where installed on CUDA).

Each (library, variant, workload) runs in a fresh process of this script (``--worker``),
so the peak memory is its own: on CUDA ``torch.cuda.max_memory_allocated`` above the
inputs and weights, on CPU the growth of the process's peak resident set over the
timed runs. Timing: ``--warmup`` untimed steps, then the median (and all) of ``--runs``
synchronised steps.

SpikingJelly needs Python >= 3.11 (Lava, and so this project's environment, needs 3.10):
its worker runs in a separate virtual environment, made once with

    uv venv -p 3.12 .venv-peers312
    uv pip install --python .venv-peers312/bin/python spikingjelly torch numpy

(``--sj-python PATH`` points at its interpreter; without one SpikingJelly is reported
unavailable). The worker is this file itself: it imports nothing from neurodeploy when
run as ``--worker spikingjelly``.

    uv run --group peers python benchmarks/peers.py --device cpu --json benchmarks/results/peers_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD, VOLTAGE_DECAY = 1.0, 0.1  # tau_mem = 10 steps
TARGET_RATE = 0.05
LIBRARIES = [("neurodeploy", "dense"), ("neurodeploy", "sparse"), ("snntorch", "Leaky"),
             ("norse", "LIFBoxCell"), ("lava-dl slayer", "cuba.Dense"), ("spikingjelly", "LIFNode")]


def workload(name: str, n: int) -> dict:
    if name == "linear_lif":
        return dict(sizes=[n, n], steps=500, batch=16, input_rate=0.05, loss="sum")
    return dict(sizes=[700, 200, 200, 20], steps=500, batch=256, input_rate=0.02, loss="ce")


# ---------------------------------------------------------------- one library per builder
# build(weights, device) -> fn(x (batch, time, in) float) -> (output spikes (batch, time, out),
# first layer's spikes); weights: list of (out, in) torch tensors (leaf, requires_grad).

def build_neurodeploy(variant, weights, device):
    sys.path.insert(0, str(ROOT))
    import yaml

    from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters
    from neurodeploy.train.sparse import cuba_layer

    s = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())["model"]["surrogate"]
    neuron = CubaFloatParameters(current_decay=1.0, voltage_decay=VOLTAGE_DECAY, threshold=THRESHOLD)
    if variant == "dense":
        surrogate = SurrogateParameters(scale=s["scale"], height=1.0, band=None)
    else:
        surrogate = SurrogateParameters(scale=s["scale"], height=1.0, band=s["band"])

    def run(x):
        first = None
        for w in weights:
            x = cuba_layer(x, w, None, neuron, surrogate, backward=variant)
            first = x if first is None else first
        return x, first
    return run


def build_snntorch(variant, weights, device):
    import snntorch
    import torch

    cells = [snntorch.Leaky(beta=1 - VOLTAGE_DECAY, threshold=THRESHOLD, reset_mechanism="zero").to(device)
             for _ in weights]

    def run(x):
        first = None
        for w, cell in zip(weights, cells):
            cur = (x @ w.T).transpose(0, 1)  # (time, batch, out)
            mem = cell.init_leaky()
            out = []
            for c in cur:
                spk, mem = cell(c, mem)
                out.append(spk)
            x = torch.stack(out, 1)
            first = x if first is None else first
        return x, first
    return run


def build_norse(variant, weights, device):
    import norse.torch as norse
    import torch

    # dt = 1 ms, tau_mem_inv 100 /s: v += 0.1 (v_leak - v + i), the same LIF with the input scaled by 0.1
    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(VOLTAGE_DECAY / 1e-3), v_th=torch.tensor(THRESHOLD),
                               v_reset=torch.tensor(0.0))
    cells = [norse.LIFBoxCell(p, dt=1e-3).to(device) for _ in weights]

    def run(x):
        first = None
        for w, cell in zip(weights, cells):
            cur = (x @ w.T).transpose(0, 1)
            state, out = None, []
            for c in cur:
                spk, state = cell(c, state)
                out.append(spk)
            x = torch.stack(out, 1)
            first = x if first is None else first
        return x, first
    return run


def build_slayer(variant, weights, device):
    import lava.lib.dl.slayer as slayer
    import torch

    if device == "cuda":  # lava-dl 0.6 builds for sm_80 only: build for the GPU at hand
        from lava.lib.dl.slayer import jitconfig
        jitconfig.TORCH_CUDA_ARCH_LIST = "{}.{}".format(*torch.cuda.get_device_capability())
    params = dict(threshold=THRESHOLD, current_decay=1.0, voltage_decay=VOLTAGE_DECAY,
                  tau_grad=1.0, scale_grad=1.0)
    blocks = []
    for w in weights:
        b = slayer.block.cuba.Dense(params, w.shape[1], w.shape[0], delay_shift=False).to(device)
        with torch.no_grad():
            b.synapse.weight.copy_(w.detach().reshape(b.synapse.weight.shape))
        blocks.append(b)
    weights[:] = [b.synapse.weight for b in blocks]  # the leaves whose gradients are taken

    def run(x):
        x = x.transpose(1, 2)  # slayer: (batch, neurons, time)
        first = None
        for b in blocks:
            x = b(x)
            first = x if first is None else first
        return x.transpose(1, 2), first.transpose(1, 2)
    return run


def build_spikingjelly(variant, weights, device):
    import inspect

    from spikingjelly.activation_based import neuron

    # SpikingJelly < 2 picks its multi-step kernel with ``backend`` ('torch', 'cupy');
    # 2.x picks it by itself
    kwargs = {}
    if "backend" in inspect.signature(neuron.LIFNode.__init__).parameters:
        kwargs["backend"] = "cupy" if device == "cuda" else "torch"
    # decay_input=False: v = (1 - 1/tau) v + x, reset to 0, as ours
    cells = [neuron.LIFNode(tau=1 / VOLTAGE_DECAY, decay_input=False, v_threshold=THRESHOLD, v_reset=0.0,
                            detach_reset=True, step_mode="m", **kwargs).to(device) for _ in weights]

    def run(x):
        first = None
        for w, cell in zip(weights, cells):
            cell.reset()
            x = cell((x @ w.T).transpose(0, 1).contiguous()).transpose(0, 1)
            first = x if first is None else first
        return x, first
    run.backend = kwargs.get("backend", "default")
    return run


BUILDERS = {"neurodeploy": build_neurodeploy, "snntorch": build_snntorch, "norse": build_norse,
            "lava-dl slayer": build_slayer, "spikingjelly": build_spikingjelly}


# ------------------------------------------------------------------------------ the worker
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args) -> dict:
    import torch

    torch.manual_seed(0)
    spec = workload(args.workload, args.n)
    device = args.device
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(spec["batch"], spec["steps"], spec["sizes"][0], generator=g) < spec["input_rate"]).float()
    target = torch.randint(0, spec["sizes"][-1], (spec["batch"],), generator=g)
    base = [torch.empty(b, a).uniform_(-1, 1, generator=g) * (3.0 / a) ** 0.5
            for a, b in zip(spec["sizes"][:-1], spec["sizes"][1:])]
    x, target = x.to(device), target.to(device)

    def make(gain):
        weights = [(w * gain).to(device).requires_grad_() for w in base]
        return BUILDERS[args.library](args.variant, weights, device), weights

    def first_rate(gain, batch=2):
        fn, _ = make(gain)
        with torch.no_grad():
            return float(fn(x[:batch])[1].float().mean())

    lo, hi = 0.0, 4.0  # bisection on the gain for the first layer's rate
    while first_rate(hi) < TARGET_RATE and hi < 1e4:
        lo, hi = hi, hi * 4
    for _ in range(args.bisect):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if first_rate(mid) < TARGET_RATE else (lo, mid)
    gain = 0.5 * (lo + hi)
    fn, weights = make(gain)

    def step():
        for w in weights:
            w.grad = None
        out, first = fn(x)
        if spec["loss"] == "sum":
            loss = out.sum()
        else:
            loss = torch.nn.functional.cross_entropy(out.sum(1) * 0.3, target)
        loss.backward()
        return out, first

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    mem0 = torch.cuda.memory_allocated() if device == "cuda" else rss_bytes()
    peak0 = peak_rss_bytes()
    for _ in range(args.warmup):
        out, first = step()
    times = []
    for _ in range(args.runs):
        sync()
        t0 = time.perf_counter()
        out, first = step()
        sync()
        times.append(time.perf_counter() - t0)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - mem0
    else:
        peak = max(peak_rss_bytes() - max(mem0, peak0), 0)
    res = {"forward_backward_s": statistics.median(times), "times_s": times,
           "peak_memory_bytes": int(peak), "weight_gain": gain,
           "first_layer_rate": float(first.float().mean()), "output_rate": float(out.float().mean()),
           "torch": torch.__version__, "python": platform.python_version(),
           "grad_norm": float(sum(float(w.grad.norm()) ** 2 for w in weights if w.grad is not None) ** 0.5)}
    if hasattr(fn, "backend"):
        res["backend"] = fn.backend
    return res


# ------------------------------------------------------------------------------ the driver
def machine(device: str) -> dict:
    from neurodeploy.machine import cpu_model
    cpu = cpu_model()
    m = {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
         "python": platform.python_version()}
    try:
        import torch
        m["torch"] = torch.__version__
        m["torch_threads"] = torch.get_num_threads()
        if device == "cuda":
            m["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return m


def run_case(args, library, variant, workload_name, n) -> dict:
    python = sys.executable
    if library == "spikingjelly":
        python = args.sj_python
        if not python or not Path(python).exists():
            return {"available": False, "reason": "SpikingJelly needs Python >= 3.11: pass --sj-python "
                                                  "(see this script's docstring)"}
    cmd = [python, str(Path(__file__).resolve()), "--worker", library, "--variant", variant,
           "--workload", workload_name, "--n", str(n), "--device", args.device,
           "--runs", str(args.runs), "--warmup", str(args.warmup), "--bisect", str(args.bisect)]
    load = os.getloadavg()
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"available": False, "reason": f"over --timeout {args.timeout} s", "loadavg_before": load}
    if done.returncode != 0:
        return {"available": False, "reason": (done.stderr.strip().splitlines() or ["?"])[-1][:400],
                "loadavg_before": load}
    res = json.loads(done.stdout.strip().splitlines()[-1])
    res.update(available=True, loadavg_before=list(load), loadavg_after=list(os.getloadavg()),
               wall_s=time.perf_counter() - t0)
    return res


def comparison(results) -> list:
    """Per workload (and n): each neurodeploy variant's time over the fastest peer's."""
    rows = []
    for wl, n in sorted({(r["workload"], r.get("n") or 0) for r in results}):
        group = [r for r in results if r["workload"] == wl and (r.get("n") or 0) == n and r.get("available")]
        peers = [r for r in group if r["library"] != "neurodeploy"]
        if not peers:
            continue
        fastest = min(peers, key=lambda r: r["forward_backward_s"])
        for r in group:
            if r["library"] == "neurodeploy":
                rows.append({"workload": wl, "n": n or None, "variant": r["variant"],
                             "forward_backward_s": r["forward_backward_s"],
                             "fastest_peer": f"{fastest['library']} {fastest['variant']}",
                             "fastest_peer_s": fastest["forward_backward_s"],
                             "time_over_fastest_peer": r["forward_backward_s"] / fastest["forward_backward_s"],
                             "faster_than_every_peer": r["forward_backward_s"] < fastest["forward_backward_s"]})
    return rows


def bar_chart(results, path: Path, device: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["workload"], r.get("n")) for r in results})
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), squeeze=False)
    for ax, (wl, n) in zip(axes[0], groups):
        rows = [r for r in results if r["workload"] == wl and r.get("n") == n and r.get("available")]
        labels = [f"{r['library']}\n{r['variant']}" for r in rows]
        values = [r["forward_backward_s"] for r in rows]
        colors = ["tab:orange" if r["library"] == "neurodeploy" else "tab:gray" for r in rows]
        ax.bar(range(len(rows)), values, color=colors)
        ax.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("forward + backward (s, median)")
        ax.set_title(f"{wl}" + (f" n = {n}" if wl == "linear_lif" else "") + f" ({device})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="write the results here (and a .png beside)")
    ap.add_argument("--n", type=int, nargs="+", default=None,
                    help="linear_lif sizes (default 4096 on CPU, 16384 on CUDA)")
    ap.add_argument("--workloads", nargs="+", default=["linear_lif", "shd"], choices=["linear_lif", "shd"])
    ap.add_argument("--libraries", nargs="+", default=None, help="subset of: " + ", ".join(BUILDERS))
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bisect", type=int, default=10, help="bisection steps for the 5 %% rate")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per case")
    ap.add_argument("--sj-python", default=str(ROOT / ".venv-peers312" / "bin" / "python"),
                    help="Python >= 3.11 with spikingjelly and torch installed")
    ap.add_argument("--replot", action="store_true",
                    help="only recompute the comparison and the chart of an existing --json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workload", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        args.library = args.worker
        args.n = args.n[0]
        print(json.dumps(worker(args)))
        return

    if args.replot:
        out = json.loads(args.json.read_text())
        out["comparison"] = comparison(out["results"])
        args.json.write_text(json.dumps(out, indent=2))
        bar_chart(out["results"], args.json.with_suffix(".png"), out["device"])
        return

    sizes = args.n or ([16384] if args.device == "cuda" else [4096])
    results = []
    out = {"machine": machine(args.device), "device": args.device,
           "loadavg_start": list(os.getloadavg()),
           "settings": {"runs": args.runs, "warmup": args.warmup, "target_rate": TARGET_RATE,
                        "neuron": {"threshold": THRESHOLD, "voltage_decay": VOLTAGE_DECAY,
                                   "current_decay": 1.0, "reset": "to zero"}},
           "results": results}
    for wl in args.workloads:
        for n in (sizes if wl == "linear_lif" else [None]):
            for library, variant in LIBRARIES:
                if args.libraries and library not in args.libraries:
                    continue
                r = {"library": library, "variant": variant, "workload": wl, "n": n,
                     **{k: v for k, v in workload(wl, n or 0).items() if k != "sizes"},
                     "sizes": workload(wl, n or 0)["sizes"]}
                r.update(run_case(args, library, variant, wl, n or 0))
                results.append(r)
                print(f"{wl} {n or ''} {library} {variant}: "
                      + (f"{r['forward_backward_s']:.3f} s, rate {r['first_layer_rate']:.3f}, "
                         f"peak {r['peak_memory_bytes'] / 2**20:.0f} MiB" if r["available"] else r["reason"]),
                      flush=True)
                if args.json:  # keep what is measured so far
                    out["loadavg_end"] = list(os.getloadavg())
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(out, indent=2))
    out["comparison"] = comparison(results)
    for c in out["comparison"]:
        print(f"{c['workload']} {c['n'] or ''} neurodeploy {c['variant']}: {c['time_over_fastest_peer']:.2f}x "
              f"the time of the fastest peer ({c['fastest_peer']})")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        bar_chart(results, args.json.with_suffix(".png"), args.device)


if __name__ == "__main__":
    main()
