"""neurodeploy's Python API with your own model and training loop (no YAML config).

    uv run python examples/api_example.py [--epochs 3] [--lava-samples 8] [--out DIR]
                                          [--train-samples 1400]

scikit-learn's digits as rate-coded spikes -> a model of neurodeploy layers inside a
plain nn.Module (a recurrent hidden layer) -> a hand-written Adam loop -> a hardware-aware
fine-tuning epoch -> nd.quantize -> netx file -> bit-exact simulation, checked spike for
spike against the model's own forward and against Lava -> mapping onto Loihi 2.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import neurodeploy as nd

STEPS = 16


class DigitNet(nn.Module):
    """64 inputs -> 48 recurrent CUBA-LIF -> 10 CUBA-LIF; the class is the output
    neuron with the most spikes."""

    def __init__(self):
        super().__init__()
        neuron = nd.CubaFloatParameters(current_decay=0.25, voltage_decay=0.03, threshold=1.0)
        surrogate = nd.SurrogateParameters(scale=3.0, band=3.0)
        # registered in running order: nd.quantize takes the layers in this order
        self.hidden = nd.CubaDense(64, 48, neuron, surrogate, backward="sparse", recurrent=True)
        self.readout = nd.CubaDense(48, 10, neuron, surrogate, backward="sparse")

    def forward(self, x):  # x: (batch, time, 64) spikes
        return self.readout(self.hidden(x))  # (batch, time, 10) spikes


def rate_code(images, steps, seed):
    """Bernoulli spikes with probability pixel / 16 per step: (N, steps, 64)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.as_tensor(images, dtype=torch.float32) / 16.0
    return (torch.rand(len(images), steps, p.shape[1], generator=g) < p[:, None, :]).float()


def train(model, x, y, epochs, lr, seed):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), 32):
            idx = order[i:i + 32]
            counts = model(x[idx]).sum(dim=1)
            loss = nn.functional.cross_entropy(0.3 * counts, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.3f}")


def accuracy(spikes, labels):
    return float((np.asarray(spikes).sum(axis=1).argmax(axis=1) == np.asarray(labels)).mean())


def main(epochs=3, lava_samples=8, out=None, train_samples=1400):
    torch.manual_seed(0)
    digits = load_digits()
    x_all = rate_code(digits.data, STEPS, seed=0)
    y_all = torch.as_tensor(digits.target)
    n = min(train_samples, 1400)  # digits 1400.. are the test set
    x_train, y_train = x_all[:n], y_all[:n]
    x_test, y_test = x_all[1400:], y_all[1400:]

    model = DigitNet()
    train(model, x_train, y_train, epochs, lr=3e-3, seed=0)
    nd.hardware_aware(model)  # fine-tune with the chip's fixed-point forward
    train(model, x_train, y_train, 1, lr=5e-4, seed=1)
    model.eval()
    with torch.no_grad():
        own = model(x_test).numpy().astype(np.uint8)  # the chip-exact forward

    network = nd.quantize(model, name="digit_net")
    out = Path(out or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    path = nd.write_netx(network, out / "digit_net.net")
    network = nd.read_netx(path)
    sim = nd.simulate(network, x_test)
    print(f"test accuracy: model {accuracy(own, y_test):.3f}, bit-exact simulation {accuracy(sim, y_test):.3f}")
    print(f"simulation equals the model's own forward spike for spike: {np.array_equal(sim, own)}")

    result = {"model_accuracy": accuracy(own, y_test), "sim_accuracy": accuracy(sim, y_test),
              "sim_equals_model": bool(np.array_equal(sim, own)), "lava_equals_sim": None}
    if lava_samples:
        try:
            lava = nd.run_lava(path, x_test[:lava_samples])
        except nd.NeurodeployError as e:  # Lava needs CPython 3.10
            print(f"Lava: skipped ({e})")
        else:
            result["lava_equals_sim"] = bool(np.array_equal(lava, sim[:lava_samples]))
            print(f"Lava equals the simulation on {lava_samples} samples: {result['lava_equals_sim']}")

    report = nd.map_network(network, "loihi2", inputs=x_test[:16])
    print(report.table())
    result["cores"] = report.total_cores
    try:
        nd.write_nir(network, out / "digit_net.nir", dt=1e-3)
        print(f"NIR graph: {out / 'digit_net.nir'}")
    except (nd.NeurodeployError, ImportError) as e:  # NIR support or the nir package missing
        print(f"NIR: skipped ({e})")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lava-samples", type=int, default=8)
    parser.add_argument("--out", default=None, help="directory for digit_net.net (default: a temporary one)")
    parser.add_argument("--train-samples", type=int, default=1400, help="of the first 1400 digits")
    args = parser.parse_args()
    main(args.epochs, args.lava_samples, args.out, args.train_samples)
