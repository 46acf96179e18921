"""Hardware configs, mapper, energy arithmetic, deploy detection and bundles
(everything that can be checked without a Loihi chip)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from neurodeploy import lava_adapter
from neurodeploy.cli import main
from neurodeploy.errors import OutputError
from neurodeploy.export.netx import write_netx
from neurodeploy.hardware import deploy as dep
from neurodeploy.hardware.activity import (
    estimate_activity,
    estimate_energy,
    hardware_metrics,
    network_fan_outs,
    neuron_updates,
    spikes_from_simulation,
    synaptic_ops,
)
from neurodeploy.hardware.bundle import BundleError, sha256, verify_bundle, write_bundle
from neurodeploy.hardware.config import (
    HW_CONFIG_DIR,
    HardwareConfigError,
    load_hardware_config,
)
from neurodeploy.hardware.mapper import MappingError, conv_input_axons, map_network, weight_bits_needed
from neurodeploy.network import Conv, CubaNeuron, Dense, Input, Network, SigmaDeltaNeuron
from neurodeploy.sim.samples import sample_stream, stream_steps
from neurodeploy.sim.simulator import simulate

NEURON = CubaNeuron(current_decay=1024, voltage_decay=128, threshold=60)


def dense_net(sizes, seed=0, lo=-20, hi=60, **kw) -> Network:
    rng = np.random.default_rng(seed)
    layers = [Dense(weight=2 * rng.integers(lo, hi, (n_out, n_in)), neuron=NEURON)
              for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    return Network(layers=tuple(layers), input_shape=(sizes[0],), name=kw.get("name", "net"))


@pytest.fixture(scope="module")
def loihi1():
    return load_hardware_config("loihi1")


@pytest.fixture(scope="module")
def loihi2():
    return load_hardware_config("loihi2")


# --- configs -------------------------------------------------------------------
def test_all_targets_load_with_their_chip_counts():
    got = {n: load_hardware_config(n) for n in ("loihi1", "loihi2", "oheo_gulch", "kapoho_point")}
    assert got["loihi1"].cores == 128 and got["loihi1"].neurons_per_core == 1024
    assert got["loihi1"].synaptic_memory_bits_per_core == 128 * 1024 * 8
    assert got["loihi1"].input_axons_per_core == got["loihi1"].output_axons_per_core == 4096
    assert got["oheo_gulch"].chips == 1 and got["kapoho_point"].chips == 8
    assert got["kapoho_point"].cores == 8 * 128
    # boards inherit the chip's sourced figures
    for key in ("neurons_per_core", "synapses_per_chip", "weight_bits", "spike_payload_bits"):
        assert getattr(got["kapoho_point"], key) == getattr(got["loihi2"], key)
    # unpublished Loihi 2 energy stays unknown rather than invented
    assert got["loihi2"].energy_per_synaptic_op_pj is None
    assert got["loihi1"].energy_per_synaptic_op_pj == 23.6


def test_every_number_in_the_hw_configs_has_a_source_comment():
    for path in sorted(HW_CONFIG_DIR.glob("*.yaml")):
        for line in path.read_text().splitlines():
            m = re.match(r"^(\w+):\s*([-0-9.]+|null)\s*(#.*)?$", line)
            if m:
                assert m.group(3), f"{path.name}: '{m.group(1)}' has no source comment"


def _write_cfg(tmp_path, text, name="t.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_config_errors_name_the_file_and_key(tmp_path):
    base = (HW_CONFIG_DIR / "loihi1.yaml").read_text()
    bad = _write_cfg(tmp_path, base.replace("neurons_per_core: 1024", "neurons_per_core: many"))
    with pytest.raises(HardwareConfigError, match=r"t\.yaml.*'neurons_per_core' must be an integer"):
        load_hardware_config(bad)
    bad = _write_cfg(tmp_path, base + "\ncores_per_tile: 4\n")
    with pytest.raises(HardwareConfigError, match=r"unknown key\(s\) \['cores_per_tile'\]"):
        load_hardware_config(bad)
    bad = _write_cfg(tmp_path, "\n".join(l for l in base.splitlines() if not l.startswith("weight_bits")))
    with pytest.raises(HardwareConfigError, match=r"missing required key\(s\) \['weight_bits'\]"):
        load_hardware_config(bad)
    bad = _write_cfg(tmp_path, base.replace("weight_bits: 8 ", "weight_bits: 9 "))
    with pytest.raises(HardwareConfigError, match="at most 8 weight bits"):
        load_hardware_config(bad)
    _write_cfg(tmp_path, "extends: b.yaml\nname: a\n", "a.yaml")
    _write_cfg(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(HardwareConfigError, match="cycle"):
        load_hardware_config(tmp_path / "a.yaml")
    with pytest.raises(HardwareConfigError, match="unknown hardware target 'loihi7'"):
        load_hardware_config("loihi7")


# --- mapper: networks that fit ---------------------------------------------------
@pytest.mark.parametrize("w, bits", [
    (np.array([[254, -256]]), 8),   # mixed 8-bit: even values in [-256, 254]
    (np.array([[2, -4, 6]]), 3),    # mixed, common factor 2 -> [1, -2, 3]: 2 magnitude bits + sign
    (np.array([[255, 1]]), 8),      # excitatory 8 bit
    (np.array([[12, 4]]), 2),       # excitatory, /4 -> [3, 1]
    (np.array([[-255, 0]]), 8),     # inhibitory
    (np.zeros((2, 2), int), 1),
])
def test_weight_bits_needed(w, bits):
    assert weight_bits_needed(w) == bits


def test_dense_layer_placement_hand_computed(loihi1):
    # 784 -> 512 with 8-bit mixed weights: 401,408 synapses x 8 bit = 3,211,264 bit;
    # Loihi 1 has 128 KiB = 1,048,576 bit per core -> 4 cores (memory-bound);
    # 512 neurons -> 128 per core; every core receives all 784 inputs.
    w = np.full((512, 784), 2)
    w[0, 0], w[0, 1] = -256, 254
    net = Network(layers=(Dense(weight=w, neuron=NEURON),), input_shape=(784,))
    r = map_network(net, loihi1)
    (p,) = r.layers
    assert (p.synapses, p.weight_bits, p.synaptic_memory_bits) == (401408, 8, 3211264)
    assert (p.cores, p.limited_by, p.neurons_per_core) == (4, "synaptic memory", 128)
    assert (p.input_axons_per_core, p.output_axons_per_core) == (784, 128)
    assert r.total_cores == 4 and r.chips_used == 1
    assert r.neuron_utilisation == pytest.approx(512 / (4 * 1024))
    assert r.synaptic_memory_utilisation == pytest.approx(3211264 / (4 * 1048576))
    assert r.core_utilisation == pytest.approx(4 / 128)


def test_output_axons_count_destination_cores(loihi1):
    # layer 1 has 4,000 neurons -> 4 cores of 1,024; each of layer 0's 20 neurons
    # sends one axon to each of those cores: 20 x 4 = 80 output axons
    rng = np.random.default_rng(1)
    net = Network(layers=(Dense(weight=2 * rng.integers(-64, 64, (20, 10)), neuron=NEURON),
                          Dense(weight=2 * rng.integers(-64, 64, (4000, 20)), neuron=NEURON)),
                  input_shape=(10,))
    r = map_network(net, loihi1)
    assert (r.layers[1].cores, r.layers[1].limited_by) == (4, "neurons")
    assert r.layers[0].output_axons_per_core == 20 * 4
    assert r.layers[1].output_axons_per_core == 1000  # last layer: one per neuron, to the host


def test_conv_layer_synapses_and_input_axons(loihi1):
    # input (2, 8, 8) -> conv 4 x (2, 3, 3), no padding -> (4, 6, 6): 144 neurons, fan-in 18
    rng = np.random.default_rng(2)
    conv = Conv(weight=2 * rng.integers(1, 60, (4, 2, 3, 3)), neuron=NEURON, shape=(4, 6, 6))
    net = Network(layers=(Input(shape=(2, 8, 8), neuron=NEURON), conv), input_shape=(2, 8, 8))
    r = map_network(net, loihi1)
    p = r.layers[1]
    assert (p.fan_in, p.synapses, p.cores) == (18, 144 * 18, 1)
    assert p.input_axons_per_core == 128  # the whole 2 x 8 x 8 input reaches the one core
    assert conv_input_axons(conv, (2, 8, 8), 1) == 18
    assert conv_input_axons(conv, (2, 8, 8), 4 * 4) == 4 * 4 * 2  # 2x2 positions -> 4x4 field
    # with 40 input axons per core, a core may hold 6 positions (3x2 -> 5x4 field x 2 = 40)
    narrow = map_network(net, replace(loihi1, input_axons_per_core=40)).layers[1]
    assert (narrow.cores, narrow.limited_by, narrow.input_axons_per_core) == (6, "input axons", 40)
    with pytest.raises(MappingError, match=r"layer 1 \(conv\): fan-in 18 exceeds .* 10 input axons"):
        map_network(net, replace(loihi1, input_axons_per_core=10))


def test_nonzero_only_counts_fewer_synapses(loihi2):
    net = dense_net([50, 40, 10], lo=0, hi=3)  # many zero weights
    full = map_network(net, loihi2)
    sparse = map_network(net, loihi2, count_zero_weights=False)
    assert full.synapses == 50 * 40 + 40 * 10
    assert sparse.synapses == sum(p.nonzero_synapses for p in full.layers) < full.synapses


def test_report_table_and_json_roundtrip(loihi1):
    r = map_network(dense_net([20, 32, 5]), loihi1)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["total_cores"] == 2 and [l["index"] for l in d["layers"]] == [0, 1]
    assert "cores: 2 of 128" in r.table()


# --- mapper: networks that do not fit ---------------------------------------------
def test_dense_fan_in_beyond_input_axons_names_layer_and_limit(loihi1):
    net = dense_net([10, 5000, 3])  # layer 1 has 5,000 presynaptic neurons > 4,096 axons
    with pytest.raises(MappingError, match=r"layer 1 \(dense\): fan-in 5000 .* 4096 input axons") as e:
        map_network(net, loihi1)
    assert (e.value.layer, e.value.limit) == (1, "input_axons_per_core")


def test_too_many_cores_names_the_limit(loihi1):
    net = Network(layers=(Dense(weight=np.full((129 * 1024, 1), 2), neuron=NEURON),), input_shape=(1,))
    with pytest.raises(MappingError, match=r"needs 129 cores, loihi1 has 128") as e:
        map_network(net, loihi1)
    assert e.value.limit == "cores_per_chip" and e.value.layer == 0
    kapoho = load_hardware_config("kapoho_point")
    assert map_network(net, kapoho).total_cores == 17  # ceil(132,096 neurons / 8,192 per core)


def test_parameters_beyond_bit_widths(loihi1, loihi2):
    net = dense_net([20, 32, 5])  # 7-bit weights
    with pytest.raises(MappingError, match=r"layer 0 \(dense\): weight needs 7 weight bits.*'weight_bits'"):
        map_network(net, replace(loihi1, weight_bits=4))
    hot = Network(layers=(Dense(weight=np.full((4, 3), 2), neuron=CubaNeuron(4096, 0, 5000)),),
                  input_shape=(3,))
    with pytest.raises(MappingError, match=r"threshold 5000 .* 12-bit unsigned.*'threshold_bits'"):
        map_network(hot, replace(loihi2, threshold_bits=12))
    late = Network(layers=(Dense(weight=np.full((4, 3), 2), neuron=NEURON, delay=np.array([0, 1, 70, 2])),),
                   input_shape=(3,))
    with pytest.raises(MappingError, match=r"delay 70 steps .* \[0, 63\] \('max_delay_steps'\)"):
        map_network(late, loihi2)
    graded = Network(layers=(Dense(weight=np.full((4, 3), 2), neuron=SigmaDeltaNeuron(threshold=10)),),
                     input_shape=(3,))
    with pytest.raises(MappingError, match="graded spikes need a spike payload"):
        map_network(graded, loihi1)
    assert map_network(graded, loihi2).total_cores == 1


def test_map_cli_writes_json_and_fails_with_exit_code(tmp_path):
    ok = tmp_path / "ok.net"
    write_netx(dense_net([20, 32, 5]), ok)
    res = CliRunner().invoke(main, ["map", str(ok), "--hw", "loihi1", "--json", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert "limited by" in res.output
    assert json.loads((tmp_path / "m.json").read_text())["config"]["name"] == "loihi1"
    big = tmp_path / "big.net"
    write_netx(dense_net([10, 5000, 3]), big)
    res = CliRunner().invoke(main, ["map", str(big), "--hw", str(HW_CONFIG_DIR / "loihi1.yaml")])
    assert res.exit_code == 4
    # the file's block index (layer 0: input shape)
    assert "layer 2 (dense)" in res.output and "input_axons_per_core" in res.output


# --- activity -> ops -> energy --------------------------------------------------
def test_synaptic_ops_and_energy_arithmetic(loihi1, loihi2):
    # population 0: 3 neurons with fan-outs 2, 0, 5 spiking 4, 9, 1 times -> 8 + 0 + 5 = 13
    # population 1: total 10 spikes at a mean fan-out of 3 -> 30
    assert synaptic_ops([np.array([4, 9, 1]), 10.0], [np.array([2, 0, 5]), 3.0]) == 43.0
    assert neuron_updates([3, 7], steps=5) == 50
    syn, neu, total = estimate_energy(43.0, 50, loihi1)
    assert syn == pytest.approx(43 * 23.6) and neu == pytest.approx(50 * 52)
    assert total == pytest.approx(43 * 23.6 + 50 * 52)
    assert estimate_energy(43.0, 50, loihi2) == (None, None, None)
    with pytest.raises(ValueError, match="shape"):
        synaptic_ops([np.ones(2)], [np.ones(3)])


def test_estimate_activity_from_given_spike_counts(loihi1):
    w0 = np.array([[2, 0], [4, 2], [0, 0]])  # 2 inputs -> 3 neurons
    w1 = np.array([[2, 2, 2]])  # 3 -> 1
    wr = np.array([[0, 2, 0], [0, 0, 0], [2, 2, 0]])  # recurrent on layer 0 (dense_rec)
    net = Network(layers=(Dense(weight=w0, neuron=NEURON, weight_rec=wr), Dense(weight=w1, neuron=NEURON)),
                  input_shape=(2,))
    spikes = {"input": np.array([5, 1]), "0": np.array([1, 2, 3]), "1": np.array([7])}
    dense = estimate_activity(net, loihi1, spikes, steps=10)
    # full matrices: input fan-out 3 each; layer-0 neurons: 1 (to layer 1) + 3 (recurrent)
    assert dense.synaptic_ops == (5 + 1) * 3 + (1 + 2 + 3) * (1 + 3)
    assert dense.neuron_updates == 4 * 10
    assert dense.energy_pj == pytest.approx(dense.synaptic_ops * 23.6 + 40 * 52)
    assert "ESTIMATE" in dense.label
    sparse = estimate_activity(net, loihi1, spikes, steps=10, count_zero_weights=False)
    # nonzero: input fan-outs [2, 1]; layer 0 fan-outs [1+1, 1+2, 1+0]
    assert sparse.synaptic_ops == 5 * 2 + 1 * 1 + 1 * 2 + 2 * 3 + 3 * 1
    names = [n for n, _ in network_fan_outs(net)]
    assert names == ["input", "0", "1"]
    with pytest.raises(ValueError, match=r"missing for population\(s\) \['1'\]"):
        estimate_activity(net, loihi1, {"input": [1, 1], "0": [0, 0, 0]}, steps=10)


def test_hardware_metrics_for_the_pipeline(loihi1):
    net = dense_net([20, 32, 5])
    x = (np.random.default_rng(3).random((2, 20, 30)) < 0.3).astype(np.int64)
    d = json.loads(json.dumps(hardware_metrics(net, loihi1, x)))
    assert d["fits"] and d["total_cores"] == 2 and d["config"]["name"] == "loihi1"
    assert d["activity"]["steps"] == 30 and d["activity"]["samples"] == 2
    assert d["activity"]["energy_pj"] > 0 and "ESTIMATE" in d["activity"]["label"]
    assert hardware_metrics(net, loihi1)["activity"] is None


def test_spike_counts_from_the_simulator_match_its_output():
    net = dense_net([20, 32, 5])
    x = (np.random.default_rng(3).random((3, 20, 30)) < 0.3).astype(np.int64)
    counts = spikes_from_simulation(net, x)
    out = dep.simulated_outputs(net, x)  # each sample alone, as the pipeline / chip run it
    assert out.sum() > 0
    np.testing.assert_allclose(counts["1"], out.sum(-1).mean(0))
    np.testing.assert_allclose(counts["input"], x.sum(-1).mean(0))
    assert counts["0"].shape == (32,)


# --- deploy ---------------------------------------------------------------------
def _no_extension():
    return False, "lava-loihi missing (test)"


def test_detection_without_the_extension_says_why():
    a = dep.detect_loihi(env={}, extension_status=_no_extension, slurm_available=lambda: False)
    assert not a.reachable and not a.extension_installed
    assert "lava-loihi missing (test)" in a.message
    assert "no SLURM controller" in a.message and "NXSDKHOST" in a.message
    # a host alone is not enough without the extension
    a = dep.detect_loihi(env={"NXSDKHOST": "10.1.2.3"}, extension_status=_no_extension,
                         slurm_available=lambda: False)
    assert not a.reachable and a.target.kind == "ethernet" and a.target.host == "10.1.2.3"


def test_detection_in_this_environment_finds_no_chip():
    ok, why = lava_adapter.loihi_extension_status()
    if ok:
        pytest.skip("lava-loihi is installed here")
    a = dep.detect_loihi(env={})
    assert not a.reachable and why in a.message


def test_target_selection_options_override_environment():
    yes = lambda: (True, "installed")  # noqa: E731
    env = {"PARTITION": "oheogulch", "LOIHI_GEN": "N3C1"}
    a = dep.detect_loihi(env=env, extension_status=yes, slurm_available=lambda: True)
    assert a.reachable and a.target == dep.ChipTarget("slurm", partition="oheogulch", loihi_gen="N3C1")
    a = dep.detect_loihi(partition="kp", loihi_gen="N3B3", env=env, extension_status=yes,
                         slurm_available=lambda: True)
    assert a.target.partition == "kp" and a.target.loihi_gen == "N3B3"
    a = dep.detect_loihi(host="192.168.0.7", env=env, extension_status=yes, slurm_available=lambda: True)
    assert a.reachable and a.target.kind == "ethernet"
    a = dep.detect_loihi(partition="kp", env={}, extension_status=yes, slurm_available=lambda: False)
    assert not a.reachable and "partition/board was given (kp)" in a.message
    a = dep.detect_loihi(loihi_gen="N9", env={}, extension_status=yes, slurm_available=lambda: True)
    assert not a.reachable and "unknown Loihi generation" in a.message


def test_hw_run_refuses_before_touching_lava_without_the_extension(monkeypatch):
    monkeypatch.setattr(lava_adapter, "loihi_extension_status", _no_extension)

    def boom():
        raise AssertionError("Lava (and Loihi2HwCfg) must not be imported without lava-loihi")
    monkeypatch.setattr(lava_adapter, "_import_lava", boom)
    with pytest.raises(lava_adapter.LoihiUnavailableError, match="lava-loihi missing"):
        lava_adapter.run_netx_on_loihi("x.net", np.zeros((2, 3)))
    with pytest.raises(lava_adapter.LoihiUnavailableError, match="lava-loihi missing"):
        lava_adapter.connect_loihi("slurm", partition="p")


@pytest.fixture
def small_model(tmp_path):
    net = dense_net([20, 32, 5], seed=3, lo=-20, hi=20)  # varied outputs: predictions 3, 4, 4, 2
    path = tmp_path / "small.net"
    write_netx(net, path)
    rng = np.random.default_rng(5)
    x = (rng.random((4, 20, 30)) < 0.3).astype(np.int64)
    labels = rng.integers(0, 5, 4)
    return net, path, x, labels


UNREACHABLE = dep.Availability(False, False, None, ("lava-loihi missing (test)",))
REACHABLE = dep.Availability(True, True, dep.ChipTarget("slurm", partition="p"), ())


def test_deploy_without_chip_errors_or_falls_back_to_sim(small_model):
    net, path, x, labels = small_model
    with pytest.raises(dep.ChipUnavailableError, match="lava-loihi missing.*--fallback sim"):
        dep.deploy(path, x, labels, availability=UNREACHABLE)
    r = dep.deploy(path, x, labels, fallback="sim", availability=UNREACHABLE)
    expect = np.mean(dep.classify(dep.simulated_outputs(net, x)) == labels)
    assert r.target == "simulator" and r.accuracy == pytest.approx(expect)
    assert r.spike_agreement is None and r.time_per_step_us is None


def test_deploy_checks_the_mapping_before_any_chip_call(small_model, monkeypatch, tmp_path):
    _, _, x, _ = small_model
    big = tmp_path / "big.net"
    write_netx(dense_net([10, 5000, 3]), big)
    monkeypatch.setattr(lava_adapter, "connect_loihi", lambda *a, **k: pytest.fail("chip contacted"))
    with pytest.raises(MappingError, match="layer 2"):
        dep.deploy(big, np.zeros((1, 10, 5)), availability=REACHABLE, hw_config="loihi1")


def test_deploy_on_a_stubbed_chip_reports_agreement(small_model, monkeypatch):
    """The chip path's bookkeeping (stream concatenation, resets, agreement) with
    lava_adapter's chip functions replaced by the simulator (exact) or a faulty copy."""
    net, path, x, labels = small_model
    calls = {}
    monkeypatch.setattr(lava_adapter, "connect_loihi", lambda kind, **kw: calls.update(kind=kind, **kw))

    def fake_chip(p, stream, steps=None, reset_interval=None, **kw):
        calls.update(steps=steps, reset_interval=reset_interval)
        out = simulate(net, stream, steps=steps, reset_interval=reset_interval).spikes
        return lava_adapter.LoihiRun(spikes=out, time_per_step_us=12.5, total_power_w=1.0,
                                     energy_per_step_uj=12.5)
    monkeypatch.setattr(lava_adapter, "run_netx_on_loihi", fake_chip)
    r = dep.deploy(path, x, labels, availability=REACHABLE)
    assert calls["kind"] == "slurm" and calls["partition"] == "p"
    assert calls["reset_interval"] == 30 and calls["steps"] == (4 + 1) * 30 + 2 - 1
    assert r.target == "loihi2" and r.spike_agreement == 1.0 and r.sample_agreement == 1.0
    assert r.prediction_agreement == 1.0
    assert r.time_per_step_us == 12.5 and r.energy_per_step_uj == 12.5
    assert r.accuracy == pytest.approx(np.mean(dep.classify(dep.simulated_outputs(net, x)) == labels))

    def faulty_chip(p, stream, steps=None, reset_interval=None, **kw):
        out = simulate(net, stream, steps=steps, reset_interval=reset_interval).spikes.copy()
        first = 30 + 2 - 1  # sample 0's output window starts at (0 + 1) P + L - 1
        out[:, first:first + 10] = 1 - out[:, first:first + 10]
        return lava_adapter.LoihiRun(spikes=out)
    monkeypatch.setattr(lava_adapter, "run_netx_on_loihi", faulty_chip)
    r = dep.deploy(path, x, labels, availability=REACHABLE)
    assert r.spike_agreement == pytest.approx(1 - 5 * 10 / (4 * 5 * 30))
    assert r.sample_agreement == pytest.approx(3 / 4)


def test_deploy_cli_exit_codes(small_model, tmp_path, monkeypatch):
    _, path, x, labels = small_model
    monkeypatch.setattr(lava_adapter, "loihi_extension_status", _no_extension)
    monkeypatch.setattr(lava_adapter, "slurm_controller_available", lambda: False)
    data = tmp_path / "d.npz"
    np.savez(data, inputs=x, labels=labels)
    res = CliRunner().invoke(main, ["deploy", str(path), "--data", str(data)], env={"NXSDKHOST": ""})
    assert res.exit_code == 3 and "no Loihi 2 chip is reachable" in res.output
    res = CliRunner().invoke(main, ["deploy", str(path), "--data", str(data), "--fallback", "sim",
                                    "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["target"] == "simulator"


# --- bundle ---------------------------------------------------------------------
def test_bundle_contents_and_checksums(small_model, tmp_path, loihi2):
    net, path, x, labels = small_model
    out = write_bundle(path, tmp_path / "b", inputs=x, labels=labels,
                       hardware=map_network(net, loihi2).to_dict(), encoding={"encoder": "rate"})
    names = sorted(p.name for p in out.iterdir())
    assert names == ["encoding.json", "inputs.npz", "manifest.json", "model.net", "run.py", "run.sh",
                     "samples.py"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == set(names) - {"manifest.json"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256(out / name)
    assert manifest["files"]["model.net"]["sha256"] == sha256(path)
    assert manifest["versions"]["numpy"] == np.__version__ and "lava-loihi" in manifest["versions"]
    assert manifest["hardware"]["hardware"] == "loihi2"
    enc = json.loads((out / "encoding.json").read_text())
    assert enc["input_shape_torch"] == [20] and enc["steps_per_sample"] == 30
    assert enc["reset_interval"] == 30 and enc["kind"] == "spikes" and enc["encoder"] == "rate"
    with np.load(out / "inputs.npz") as d:
        np.testing.assert_array_equal(d["inputs"], x)
        np.testing.assert_array_equal(d["labels"], labels)
    assert verify_bundle(out).ok
    with pytest.raises(OutputError, match="not empty .*--force"):
        write_bundle(path, out)
    assert write_bundle(path, out, steps=7, overwrite=True) == out  # replaces a bundle
    assert not (out / "inputs.npz").exists()
    other = tmp_path / "notabundle"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    with pytest.raises(OutputError, match="not a bundle"):
        write_bundle(path, other, overwrite=True)
    assert (other / "precious.txt").exists()


def test_verify_bundle_detects_changes_and_missing_files(small_model, tmp_path):
    _, path, _, _ = small_model
    out = write_bundle(path, tmp_path / "b", steps=25)
    with open(out / "model.net", "ab") as f:
        f.write(b"\0")
    (out / "run.sh").unlink()
    check = verify_bundle(out)
    assert not check.ok and len(check.problems) == 3  # model.net size + sha, run.sh missing
    assert any("model.net: sha256" in p for p in check.problems)
    assert any("run.sh: listed in the manifest but missing" in p for p in check.problems)
    with pytest.raises(BundleError, match="verification failed"):
        verify_bundle(out, strict=True)
    res = CliRunner().invoke(main, ["bundle", "--verify", str(out)])
    assert res.exit_code == 2 and "model.net" in res.output


def test_bundle_run_script_checks_itself_without_neurodeploy(small_model, tmp_path):
    _, path, _, _ = small_model
    res = CliRunner().invoke(main, ["bundle", str(path), "-o", str(tmp_path / "b"), "--steps", "20"])
    assert res.exit_code == 0, res.output
    run = subprocess.run([sys.executable, "run.py", "--check"], cwd=tmp_path / "b", capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and "5 files match" in run.stdout  # no inputs.npz
    (tmp_path / "b" / "encoding.json").write_text("{}")
    run = subprocess.run([sys.executable, "run.py", "--check"], cwd=tmp_path / "b", capture_output=True,
                         text=True, timeout=60)
    assert run.returncode != 0 and "encoding.json" in run.stderr


@pytest.mark.slow
@pytest.mark.lava
def test_bundle_runs_on_lava_cpu_models_and_matches_the_simulator(small_model, tmp_path):
    pytest.importorskip("lava")
    net, path, x, labels = small_model
    out = write_bundle(path, tmp_path / "b", inputs=x, labels=labels)
    run = subprocess.run(["sh", "run.sh", "--sim"], cwd=out, capture_output=True, text=True, timeout=300,
                         env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    lava_out = np.load(out / "output_spikes.npy")
    n, p = x.shape[0], x.shape[-1]
    ref = simulate(net, sample_stream(x), steps=stream_steps(n, p, 2), reset_interval=p).spikes
    np.testing.assert_array_equal(lava_out, ref)
    result = json.loads((out / "results.json").read_text())
    pred = dep.classify(dep.simulated_outputs(net, x))
    assert result["predictions"] == pred.tolist()
    assert result["accuracy"] == pytest.approx(np.mean(pred == labels))
