"""Train the same spiking network on sklearn digits with the dense and the sparse
backward (same seed, same epochs) and compare test accuracy and training time.

A stand-alone check of the sparse backward's training quality (the pipeline's own
run uses ``train.backward``); rate-coded 8x8 digits, 64-128-10 CUBA-LIF layers
(``--hidden 128 128``: two hidden layers), cross entropy on output spike counts, Adam.

    python benchmarks/sparse_digits.py --json benchmarks/results/sparse_digits_cpu.json [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters  # noqa: E402
from neurodeploy.train.sparse import cuba_layer, forward_active  # noqa: E402

NEURON = CubaFloatParameters(current_decay=0.5, voltage_decay=0.1, threshold=1.0)
INIT_SCALE = 2.0


def load(steps, seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.get_default_dtype()) / 16.0
    y = torch.tensor(d.target)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    return xtr, ytr, xte, yte


def encode(x, steps, gen):
    """Rate code: spike probability 0.5 * intensity per step."""
    p = (0.5 * x).unsqueeze(1).expand(-1, steps, -1)
    return (torch.rand(p.shape, generator=gen) < p).to(x.dtype)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train(mode, args, data, surrogate):
    dev = torch.device(args.device)
    xtr, ytr, xte, yte = data
    ytr, yte = ytr.to(dev), yte.to(dev)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)   # CPU: the same spikes on every device
    sizes = (64, *args.hidden, 10)
    ws = [torch.nn.Parameter((torch.randn(b, a) * INIT_SCALE / math.sqrt(a)).to(dev))
          for a, b in zip(sizes[:-1], sizes[1:])]
    opt = torch.optim.Adam(ws, lr=args.lr)
    backward_s, active = 0.0, []
    for epoch in range(args.epochs):
        perm = torch.randperm(len(xtr), generator=gen)
        for k in range(0, len(xtr), args.batch):
            idx = perm[k:k + args.batch]
            x = encode(xtr[idx], args.steps, gen).to(dev)
            h = cuba_layer(x, ws[0], None, NEURON, surrogate, backward=mode)
            out = h
            for w in ws[1:]:
                out = cuba_layer(out, w, None, NEURON, surrogate, backward=mode)
            loss = torch.nn.functional.cross_entropy(out.sum(1) * 0.2, ytr[idx])
            opt.zero_grad()
            sync(dev)
            t0 = time.perf_counter()
            loss.backward()
            sync(dev)
            backward_s += time.perf_counter() - t0
            opt.step()
            if k == 0:
                with torch.no_grad():
                    active.append(forward_active(x, ws[0], None, None, NEURON, surrogate)[1].numel()
                                  / h.numel())
    with torch.no_grad():
        egen = torch.Generator().manual_seed(1234)
        x = encode(xte, args.steps, egen).to(dev)
        out = x
        for w in ws:
            out = cuba_layer(out, w, None, NEURON, surrogate)
        acc = (out.sum(1).argmax(1) == yte).float().mean().item()
    return {"test_accuracy": acc, "backward_s_total": backward_s,
            "hidden_active_fraction_first_batches": active}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128], help="hidden layer sizes")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--band", type=float, default=1.0)
    ap.add_argument("--scale", type=float, default=2.0, help="surrogate scale")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the Triton sparse backward)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                    help="float64: dense and sparse gradients agree to ~1e-15, so the two "
                         "training runs stay on the same trajectory far longer")
    args = ap.parse_args(argv)
    torch.set_default_dtype(getattr(torch, args.dtype))
    surrogate = SurrogateParameters(scale=args.scale, height=1.0, band=args.band)
    res = {"settings": {k: v for k, v in vars(args).items() if k != "json"}, "runs": [],
           "device": (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                      else platform.processor() or platform.machine()),
           "torch": torch.__version__}
    for seed in args.seeds:
        args.seed = seed
        data = load(args.steps, seed)
        run = {"seed": seed}
        for mode in ("dense", "sparse"):
            run[mode] = train(mode, args, data, surrogate)
        run["accuracy_difference_points"] = 100 * (run["sparse"]["test_accuracy"]
                                                   - run["dense"]["test_accuracy"])
        print(seed, run["dense"]["test_accuracy"], run["sparse"]["test_accuracy"], flush=True)
        res["runs"].append(run)
    def mean(key):
        return sum(r[key]["test_accuracy"] for r in res["runs"]) / len(res["runs"])
    res["dense_mean_accuracy"], res["sparse_mean_accuracy"] = mean("dense"), mean("sparse")
    res["mean_accuracy_difference_points"] = 100 * (res["sparse_mean_accuracy"] - res["dense_mean_accuracy"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
