"""The simulator's SRC blocks against the SRC Lava process (``neurodeploy.lava_src``,
fed through Lava's own Dense, ``Loihi2SimCfg(select_tag='fixed_pt')``): every state
variable (i, h, hs) and every message of every layer at every step, on random
networks with extreme fields, tables, weights, biases and inputs that saturate."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy import fixedpoint as fx
from neurodeploy import fixedpoint_src as fxs
from neurodeploy.network import Dense, Network, SrcNeuron
from neurodeploy.sim.simulator import simulate

pytestmark = [pytest.mark.slow, pytest.mark.lava]
lava_adapter = pytest.importorskip("neurodeploy.lava_adapter")
if not lava_adapter.lava_available():
    pytest.skip("Lava is not importable here", allow_module_level=True)

NETWORKS_PER_RUN = 4  # one Lava build and run checks this many networks


def _neuron(rng, extreme: bool, input_shift: int, output: str) -> SrcNeuron:
    def decay():
        return int(rng.choice([1, 4096, 410])) if extreme else int(rng.integers(1, 4097))

    if extreme:
        tables = [rng.choice([0, fx.DECAY_UNITY, 65535], fxs.TABLE_SIZE) for _ in range(2)]
        gains = [int(rng.choice([-128, 127, 32, -112])) for _ in range(2)]
    else:  # the cell's own tables at a random weight exponent
        e = int(rng.integers(-2, 9))
        tables = [fxs.rho_table(float(rng.uniform(0.5, 6)), fxs.x_table_shift(3.0, e), e),
                  fxs.tanh_table()]
        gains = [int(rng.integers(-128, 128)) for _ in range(2)]
    return SrcNeuron(
        input_decay=decay(), input_shift=input_shift, x_shift=int(rng.integers(0, 12)),
        x_table=tuple(int(v) for v in tables[0]), h_shift=int(rng.integers(0, 12)),
        h_table=tuple(int(v) for v in tables[1]), gain_fast=gains[0], gain_slow=gains[1],
        update_decay=decay(), gate_threshold=int(rng.integers(-fxs.UNIT, fxs.UNIT + 1)),
        slow_decay_rest=decay(), slow_decay_active=decay(), output=output,
        message_shift=int(rng.integers(0, fxs.MESSAGE_SHIFT_RANGE[1] + 1)),
        reset_state=int(rng.integers(-fxs.UNIT, fxs.UNIT + 1)))


def _network(rng, n_in: int, extreme: bool, graded_input: bool) -> Network:
    sizes = [n_in] + [int(rng.integers(2, 7)) for _ in range(int(rng.integers(1, 3)))] + [3]
    layers, shift = [], 0 if graded_input else 6
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = k == len(sizes) - 2
        output = "current" if last else str(rng.choice(["graded", "binary"]))
        w = rng.integers(-128, 128, (b, a)) * 2
        if extreme:
            w = rng.choice([-256, 254, 0, 2], (b, a))
        bias = rng.integers(*fx.BIAS_RANGE, endpoint=True, size=b)
        if extreme:
            bias = rng.choice([fx.BIAS_RANGE[0], fx.BIAS_RANGE[1], 0], b)
        layers.append(Dense(weight=w, bias=None if last and rng.random() < 0.5 else bias,
                            neuron=_neuron(rng, extreme, shift, output)))
        shift = int(rng.integers(0, 7))
    return Network(layers=tuple(layers), input_shape=(n_in,),
                   input_message_bits=10 if graded_input else 0)


@settings(max_examples=2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 16), graded_input=st.booleans(), reset=st.sampled_from([None, 7]))
def test_random_src_networks_match_lava_every_variable_every_step(seed, graded_input, reset):
    rng = np.random.default_rng(seed)
    n_in, steps = int(rng.integers(2, 6)), 24
    nets = [_network(rng, n_in, extreme=k % 2 == 1, graded_input=graded_input)
            for k in range(NETWORKS_PER_RUN)]
    if graded_input:  # large graded messages: saturate i (24 bit) through the input decay
        x = rng.integers(-1023, 1024, (n_in, steps))
    else:
        x = (rng.random((n_in, steps)) < 0.6).astype(np.int64)
    runs = lava_adapter.run_src_networks(nets, x, steps=steps, reset_interval=reset, probe=True)
    saturated = 0
    for net, lava in zip(nets, runs):
        ours = simulate(net, x[None], steps=steps, reset_interval=reset, record=True)
        assert np.array_equal(ours.spikes[0], lava.spikes), "output messages differ"
        for j in range(len(net.layers)):
            for var in ("i", "h", "hs", "s"):
                assert np.array_equal(ours.records[f"{var}/{j}"][0], lava.probes[f"{var}/{j}"]), (var, j)
            saturated += int(np.abs(lava.probes[f"i/{j}"]).max() == fx.VOLTAGE_LIMIT)
    if graded_input:
        assert saturated > 0, "no input current reached the 24-bit limit"


def test_src_networks_refuse_other_blocks():
    from neurodeploy.network import CubaNeuron
    net = Network(layers=(Dense(weight=np.ones((2, 3), np.int64) * 2, neuron=CubaNeuron(1, 0, 10)),),
                  input_shape=(3,))
    with pytest.raises(ValueError, match="SRC neurons only"):
        lava_adapter.run_src_network(net, np.zeros((3, 4), np.int64))
