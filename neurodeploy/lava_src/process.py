"""The SRC neuron process: synaptic input ``a_in`` (from Lava's Dense), messages
``s_out``; state i, h, hs. The integer fields are those of
:class:`neurodeploy.fixedpoint_src.SrcParameters` (see ``docs/src.md``)."""
from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class SRC(AbstractProcess):
    """Spiking Recurrent Cell neurons in Loihi 2 fixed point.

    shape: neurons; bias: b_h mantissa per neuron (13 bit, ``<< 6`` into Q12);
    x_table, h_table: 256 unsigned 16-bit entries each; the scalar fields as in
    :class:`neurodeploy.fixedpoint_src.SrcParameters`; reset_interval / reset_offset:
    i is zeroed and h, hs set to ``reset_state`` (their initial value) before the
    dynamics of steps with
    ``time_step % reset_interval == reset_offset`` (as Lava's LIFReset).
    record_steps: > 0 keeps i, h, hs of the first ``record_steps`` steps in the Var
    ``record`` (record_steps, 3, *shape), read with ``record.get()`` after a run (no
    Monitor processes)."""

    def __init__(self, *, shape: ty.Tuple[int, ...], bias: np.ndarray, x_table: np.ndarray,
                 h_table: np.ndarray, input_decay: int, input_shift: int, x_shift: int,
                 h_shift: int, gain_fast: int, gain_slow: int, update_decay: int,
                 gate_threshold: int, slow_decay_rest: int, slow_decay_active: int,
                 output: str, message_shift: int, reset_state: int = 0, reset_interval: int = 0,
                 reset_offset: int = 0, record_steps: int = 0,
                 name: ty.Optional[str] = None) -> None:
        fields = dict(input_decay=int(input_decay), input_shift=int(input_shift),
                      x_shift=int(x_shift), h_shift=int(h_shift), gain_fast=int(gain_fast),
                      gain_slow=int(gain_slow), update_decay=int(update_decay),
                      gate_threshold=int(gate_threshold), slow_decay_rest=int(slow_decay_rest),
                      slow_decay_active=int(slow_decay_active), output=str(output),
                      message_shift=int(message_shift), reset_state=int(reset_state),
                      reset_interval=int(reset_interval),
                      reset_offset=int(reset_offset), record_steps=int(record_steps))
        super().__init__(shape=shape, name=name, **fields)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.i = Var(shape=shape, init=0)
        self.h = Var(shape=shape, init=int(reset_state))
        self.hs = Var(shape=shape, init=int(reset_state))
        self.bias = Var(shape=shape, init=np.asarray(bias).reshape(shape))
        self.x_table = Var(shape=(256,), init=np.asarray(x_table))
        self.h_table = Var(shape=(256,), init=np.asarray(h_table))
        self.record = Var(shape=(max(int(record_steps), 1), 3) + tuple(shape), init=0)
