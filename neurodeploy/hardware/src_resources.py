"""Loihi 2 resources of Spiking Recurrent Cell layers: an estimate.

Loihi 2 runs custom neuron models as microcode on each neuro core; Intel publishes no
per-instruction cost or state-memory layout for them. The figures here are counted
from the integer cell itself (:func:`neurodeploy.fixedpoint_src.src_step`):

- state words per neuron: i, h, h_s (24-bit registers) and the bias mantissa b_h
  (13 bit, one word): 4 words (CUBA-LIF keeps u, v: 2, plus its bias);
- table memory per core that holds the layer: the two 256-entry tables of 16-bit
  entries (8 kbit) and the 12 scalar fields (16 bit each);
- integer operations per neuron and step, by part of the step (:data:`OPS_PER_STEP`).
"""
from __future__ import annotations

from typing import Dict, List

from neurodeploy import fixedpoint_src as fxs

STATE_WORDS_PER_NEURON = 4  # i, h, h_s, b_h
STATE_WORD_BITS = 24
SCALAR_FIELDS = 12
SCALAR_FIELD_BITS = 16
#: integer operations per neuron per step (multiply, add, shift, compare/select, abs/sign,
#: table read each count 1): the terms of fixedpoint_src.src_step
OPS_PER_STEP = {
    "input current: decay (mul, |.|, shift, sign), a << shift, add, saturate (2)": 8,
    "x: |i|, shift, min, table read, sign": 5,
    "pre-activation: 2 gains (mul, shift), bias shift, 3 adds, saturate (2)": 10,
    "tanh: |p|, shift, min, table read, sign": 5,
    "h: sub, decay (mul, |.|, shift, sign), add": 6,
    "gate: compare, select": 2,
    "h_s: sub, decay (mul, |.|, shift, sign), add": 6,
    "output: max, shift": 2,
}
OPS_PER_NEURON_STEP = sum(OPS_PER_STEP.values())


def src_resources(network, cores_per_layer: Dict[int, int] = None) -> List[dict]:
    """Per SRC block: neurons, state words and bits, table memory (per core and for the
    layer's cores), operations per step. ``cores_per_layer``: block index -> cores
    (from the mapping; 1 when not given)."""
    from neurodeploy.network import SrcNeuron

    rows = []
    table_bits = 2 * fxs.TABLE_SIZE * 16 + SCALAR_FIELDS * SCALAR_FIELD_BITS
    for i, block in enumerate(network.layers):
        neuron = getattr(block, "neuron", None)
        if not isinstance(neuron, SrcNeuron):
            continue
        n = int(block.num_neurons)
        cores = int((cores_per_layer or {}).get(i, 1))
        rows.append({
            "layer": i, "neurons": n, "output": neuron.output, "estimate": True,
            "state_words_per_neuron": STATE_WORDS_PER_NEURON,
            "state_bits": n * STATE_WORDS_PER_NEURON * STATE_WORD_BITS,
            "table_bits_per_core": table_bits, "cores": cores,
            "table_bits": table_bits * cores,
            "ops_per_neuron_step": OPS_PER_NEURON_STEP,
            "ops_per_step": n * OPS_PER_NEURON_STEP,
            "message_bits": neuron.message_bits,
        })
    return rows


def src_table(rows: List[dict]) -> str:
    """The per-layer rows as text, labelled as an estimate."""
    if not rows:
        return ""
    lines = ["Spiking Recurrent Cell layers (ESTIMATE: Intel publishes no cost figures for "
             "custom Loihi 2 neuron microcode; counted from the integer cell):",
             f"  {'layer':>5} {'neurons':>8} {'words/neuron':>12} {'state KiB':>10} "
             f"{'tables KiB':>10} {'ops/neuron/step':>15} {'ops/step':>10} {'msg bits':>8}"]
    for r in rows:
        lines.append(f"  {r['layer']:>5} {r['neurons']:>8} {r['state_words_per_neuron']:>12} "
                     f"{r['state_bits'] / 8192:>10.2f} {r['table_bits'] / 8192:>10.2f} "
                     f"{r['ops_per_neuron_step']:>15} {r['ops_per_step']:>10} {r['message_bits']:>8}")
    return "\n".join(lines)
