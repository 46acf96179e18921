"""Every command on every kind of network the pipeline produces (command x kind).

Each kind is one fresh, small pipeline run (session-scoped: a kind trains once),
its ``model.net`` and ``test_data.npz`` then go through every command from the
command line. Outputs are checked against Lava's own spikes for the same samples
(``lava_output.npz``, written by the pipeline from Lava's bit-accurate models),
not against a second run of our own code.

Adding a kind is one entry in ``KINDS``: a name -> a function that returns the
kind's artifacts from ``tmp_path_factory``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import LAVA

from neurodeploy.cli import main

pytestmark = pytest.mark.slow

#: a small, fast run: few samples, few steps, 2 epochs; Lava on the first 8 test samples
BASE = {
    "seed": 0,
    "data": {"name": "digits", "steps": 8, "limit": 150},
    "model": {"hidden": [16]},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.01},
    "lava": {"samples": 8},
    "hardware": {"activity_samples": 4},
}
LAVA_SAMPLES = BASE["lava"]["samples"]


def _config(train=None, **model) -> dict:
    cfg = json.loads(json.dumps(BASE))
    cfg["model"].update(model)
    cfg["train"].update(train or {})
    return cfg


def _invoke(*args) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, f"neurodeploy {' '.join(map(str, args))} failed:\n{res.output}"
    return res.output


def _pipeline_run(tmp_path_factory, name: str, config: dict) -> dict:
    d = tmp_path_factory.mktemp(name)
    cfg = d / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(dict(config, name=name)))
    out = d / "run"
    args = ["pipeline", cfg, "--out", out] + ([] if LAVA else ["--lava-samples", 0])
    _invoke(*args)
    return {"dir": out, "net": out / "model.net", "data": out / "test_data.npz",
            "metrics": json.loads((out / "metrics.json").read_text()),
            "lava": out / "lava_output.npz"}


def _dense(tmp_path_factory):
    # with a hardware-aware fine-tuning epoch: Lava must also equal the training forward
    return _pipeline_run(tmp_path_factory, "dense", _config(train={"hardware_aware_epochs": 1}))


def _conv(tmp_path_factory):
    # conv with batch norm folded into weights and bias at export (current_decay 1.0)
    return _pipeline_run(tmp_path_factory, "conv", _config(
        input_shape=[1, 8, 8], conv=[{"channels": 4, "kernel": 3, "padding": 1},
                                     {"channels": 8, "kernel": 3, "stride": 2}],
        batch_norm=True, neuron={"current_decay": 1.0, "voltage_decay": 0.1, "threshold": 1.0}))


def _recurrent(tmp_path_factory):
    return _pipeline_run(tmp_path_factory, "recurrent", _config(recurrent=True))


def _nir(tmp_path_factory):
    run = _pipeline_run(tmp_path_factory, "nir_source", _config())
    assert (run["dir"] / "model.nir").exists(), "the pipeline writes model.nir"
    imported = run["dir"] / "imported.net"
    _invoke("convert", run["dir"] / "model.nir", imported)
    return dict(run, net=imported)


def _residual(tmp_path_factory):
    # residual blocks: an identity and a strided projection shortcut (netx extension),
    # with a hardware-aware epoch: Lava must also equal the training forward
    return _pipeline_run(tmp_path_factory, "residual", _config(
        train={"hardware_aware_epochs": 1}, input_shape=[1, 8, 8], conv=[{"channels": 4, "kernel": 3, "padding": 1}],
        blocks=[{"channels": 4, "count": 1}, {"channels": 6, "count": 1, "stride": 2}], hidden=[],
        batch_norm=True, neuron={"current_decay": 1.0, "voltage_decay": 0.1, "threshold": 1.0},
        surrogate={"scale": 3.0, "tune_height": True}))


KINDS = {"dense": _dense, "conv": _conv, "recurrent": _recurrent, "nir": _nir, "residual": _residual}


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = KINDS[kind](tmp_path_factory)
        return cache[kind]
    return get


@pytest.fixture(params=list(KINDS))
def run(request, runs):
    return runs(request.param)


def _samples(run):
    with np.load(run["data"]) as f:
        return f["inputs"], f["labels"]


def _lava_spikes(run):
    if not LAVA:
        pytest.skip("Lava (CPython 3.10) not importable: no outside reference for the outputs")
    with np.load(run["lava"]) as f:
        return f["spikes"]


def _predictions(spikes):
    return spikes.reshape(spikes.shape[0], -1, spikes.shape[-1]).sum(-1).argmax(1)


def test_pipeline(run):
    m = run["metrics"]
    assert run["net"].exists() and run["data"].exists()
    from neurodeploy.export.netx import read_netx
    net = read_netx(run["net"])  # the file names its input shape: no input_shape argument
    assert list(net.input_shape) == m["network"]["input"]
    if LAVA:
        assert m["agreement"]["samples"] == LAVA_SAMPLES
        assert m["agreement"]["lava_vs_quantized"] == 1.0, m["agreement"]
        if m["accuracy"]["cotrained"] is not None:
            assert m["agreement"]["lava_vs_training_forward"] == 1.0, m["agreement"]


def test_simulate(run, tmp_path):
    """``simulate`` on the samples laid out as one stream with netx's resets gives
    Lava's recorded spikes, sample for sample. A recurrent network's samples run one
    stream each: netx's reset clears the neurons but not the recurrent synapse's
    buffered spikes, so the pipeline runs Lava with the whole state zeroed between
    samples (``lava_adapter.run_netx_blocks``), as training sees them."""
    from neurodeploy.export.netx import read_netx
    from neurodeploy.sim.samples import is_recurrent, output_windows, sample_stream, stream_steps

    lava = _lava_spikes(run)
    x, _ = _samples(run)
    n, p = 3, x.shape[-1]
    net = read_netx(run["net"])
    layers = len(net.neuron_layers)
    streams = [x[i:i + 1] for i in range(n)] if is_recurrent(net) else [x[:n]]
    got = []
    for k, xs in enumerate(streams):
        np.save(tmp_path / f"stream{k}.npy", sample_stream(xs))
        _invoke("simulate", run["net"], "--input", tmp_path / f"stream{k}.npy", "--output",
                tmp_path / f"o{k}.npz", "--steps", stream_steps(len(xs), p, layers), "--reset-interval", p)
        with np.load(tmp_path / f"o{k}.npz") as f:
            got.append(output_windows(f["spikes"], len(xs), p, layers))
    got = np.concatenate(got)
    assert got.shape == lava[:n].shape
    assert np.array_equal(got, lava[:n])


def test_validate(run, tmp_path):
    lava = _lava_spikes(run)
    x, y = _samples(run)
    np.save(tmp_path / "x.npy", x[:LAVA_SAMPLES])
    np.save(tmp_path / "y.npy", y[:LAVA_SAMPLES])
    _invoke("validate", run["net"], "--input", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
            "--lava-samples", 0, "--metrics", tmp_path / "m.json")
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["accuracy"]["sim"] == pytest.approx(float(np.mean(_predictions(lava) == y[:LAVA_SAMPLES])))


def test_map(run, tmp_path):
    from neurodeploy.export.netx import read_netx
    out = _invoke("map", run["net"], "--hw", "loihi2", "--data", run["data"], "--samples", 4,
                  "--json", tmp_path / "map.json")
    report = json.loads((tmp_path / "map.json").read_text())
    net = read_netx(run["net"])
    assert [layer["index"] for layer in report["layers"]] == [i for i, _ in net.neuron_layers]
    assert report["activity"]["synaptic_ops"] > 0, out


def test_deploy_fallback_sim(run, tmp_path):
    lava = _lava_spikes(run)
    _, y = _samples(run)
    _invoke("deploy", run["net"], "--data", run["data"], "--samples", LAVA_SAMPLES, "--fallback", "sim",
            "--json", tmp_path / "d.json")
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["target"] == "simulator" and d["samples"] == LAVA_SAMPLES
    assert d["accuracy"] == pytest.approx(float(np.mean(_predictions(lava) == y[:LAVA_SAMPLES])))


def test_bundle_and_verify(run, tmp_path):
    b = tmp_path / "bundle"
    _invoke("bundle", run["net"], "-o", b, "--data", run["data"], "--samples", 4, "--hw", "loihi2")
    enc = json.loads((b / "encoding.json").read_text())
    from neurodeploy.export.netx import read_netx
    net = read_netx(run["net"])
    assert enc["input_shape_netx"] == list(net.input_shape_netx)
    with np.load(b / "inputs.npz") as f:
        assert list(f["inputs"].shape[1:-1]) == enc["input_shape_netx"]
    assert "files match" in _invoke("bundle", "--verify", b)
    p = b / "model.net"
    p.write_bytes(p.read_bytes() + b"\0")
    res = CliRunner().invoke(main, ["bundle", "--verify", str(b)])
    assert res.exit_code != 0 and "model.net" in res.output
