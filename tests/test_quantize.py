"""Quantisation to Loihi's integer fields: ranges, rounding, weight exponent choice."""
import numpy as np
import pytest
import torch

from neurodeploy import fixedpoint as fx
from neurodeploy.export.quantize import quantize_model
from neurodeploy.train.layers import SpikingNetwork
from neurodeploy.train.neuron import CubaFloatParameters, SurrogateParameters


def test_mixed_sign_weights_round_to_even_8bit_grid():
    w = np.array([[0.9, -1.0, 0.013, -0.26, 0.5]])
    q = fx.quantize_weights(w, 7)  # x128: 115.2, -128, 1.66, -33.3, 64
    assert q.tolist() == [[116, -128, 2, -34, 64]]
    assert np.all(q % 2 == 0)


def test_quantized_weights_are_a_fixed_point_of_lava_truncation():
    rng = np.random.default_rng(1)
    for _ in range(20):
        w = rng.normal(0, rng.uniform(0.01, 3), (13, 7))
        e = fx.choose_weight_exponent(np.abs(w).max())
        q = fx.quantize_weights(w, e)
        assert np.array_equal(fx.effective_weights(q), q)
        assert q.min() >= -256 and q.max() <= 254


def test_single_sign_layers_keep_full_8bit_resolution():
    assert fx.quantize_weights(np.array([[3.0, 0.0, 255.2]]), 0).tolist() == [[3, 0, 255]]
    assert fx.quantize_weights(np.array([[-3.0, -255.4]]), 0).tolist() == [[-3, -255]]


def test_lava_drops_lowest_bit_of_mixed_weights_and_clips():
    assert fx.effective_weights(np.array([3, -3, 300, -300])).tolist() == [2, -4, 254, -256]
    assert fx.effective_weights(np.array([3, 5, 300])).tolist() == [3, 5, 255]


@pytest.mark.parametrize("max_abs, expected", [(1.0, 7), (0.5, 8), (1.99, 6), (254.0, 0), (300.0, -1)])
def test_weight_exponent_uses_full_8bit_range(max_abs, expected):
    e = fx.choose_weight_exponent(max_abs)
    assert e == expected
    assert max_abs * 2.0 ** e <= 254 < max_abs * 2.0 ** (e + 1)


def test_decay_fields_respect_offsets_and_widths():
    assert fx.quantize_decay(0.25, offset_current=True) == 1024
    assert fx.quantize_decay(0.0, offset_current=True) == 1  # iDecay >= 1 (du = iDecay - 1 >= 0)
    assert fx.quantize_decay(1.0, offset_current=True) == 4096
    assert fx.quantize_decay(1.0, offset_current=False) == 4095  # dv is 12 bit
    assert fx.quantize_decay(0.03, offset_current=False) == 123


def test_threshold_beyond_17_bits_is_reported():
    with pytest.raises(fx.BitWidthError, match="vThMant"):
        fx.quantize_threshold(2.0, 17)


def test_decay_rounds_toward_zero_for_both_signs():
    x = torch.tensor([4097, -4097, 5, -5, 0])
    assert fx.decay(x, 1).tolist() == [4095, -4095, 4, -4, 0]  # 4097*4095/4096 = 4096.0002...
    assert fx.decay(torch.tensor([4095, -4095]), 2048).tolist() == [2047, -2047]


def test_current_wraps_once_and_voltage_saturates():
    big = 2 ** 23
    assert fx.wrap_current(torch.tensor([big, big + 1, -big, -big + 1])).tolist() == [big, -big + 1, big, -big + 1]
    assert fx.saturate_voltage(torch.tensor([big, -big])).tolist() == [big - 1, -(big - 1)]


def test_model_quantisation_scales_threshold_with_weight_exponent():
    torch.manual_seed(0)
    model = SpikingNetwork((6,), [5], 3, CubaFloatParameters(0.25, 0.03, 1.0), SurrogateParameters())
    with torch.no_grad():
        model.layers[0].weight.mul_(0.0).add_(torch.linspace(-0.4, 0.4, 30).reshape(5, 6))
    net = quantize_model(model)
    assert net.metadata["weight_exponents"][0] == 9  # 0.4 * 2**9 = 204.8 <= 254
    first = net.layers[0]
    assert first.neuron.threshold == 512
    assert first.neuron.current_decay == 1024 and first.neuron.voltage_decay == 123
    assert first.weight.max() == 204 and first.weight.min() == -204
