"""Fixed-point process model of the SRC neuron (tag ``fixed_pt``), in the style of
Lava's own fixed-point models (``lava/proc/lif/models.py``,
``lava/proc/graded/models.py``): numpy integer arithmetic, 24-bit state.

This is a second, independent transcription of the cell's integer arithmetic
(the first: :mod:`neurodeploy.fixedpoint_src`, which the simulator and training
run); the tests require the two to agree on every state variable at every step."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from neurodeploy.lava_src.process import SRC


@implements(proc=SRC, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySrcModelFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    i: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    h: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    hs: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    x_table: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    h_table: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    record: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    decay_shift = 12
    decay_unity = 1 << 12
    state_limit = (1 << 23) - 1
    bias_exp = 6
    gain_shift = 4

    def __init__(self, proc_params):
        super().__init__(proc_params)
        for key in ("input_decay", "input_shift", "x_shift", "h_shift", "gain_fast", "gain_slow",
                    "update_decay", "gate_threshold", "slow_decay_rest", "slow_decay_active",
                    "output", "message_shift", "reset_state", "reset_interval", "reset_offset",
                    "record_steps"):
            setattr(self, key, proc_params[key])

    def _decayed(self, x: np.ndarray, decay) -> np.ndarray:
        """x (1 - decay / 4096), rounded toward zero."""
        prod = x * (self.decay_unity - np.asarray(decay, dtype=np.int64))
        return np.sign(prod) * np.right_shift(np.abs(prod), self.decay_shift)

    def _lookup(self, x: np.ndarray, table: np.ndarray, shift: int) -> np.ndarray:
        index = np.minimum(np.right_shift(np.abs(x), shift), table.size - 1)
        return np.sign(x) * table.astype(np.int64)[index]

    def run_spk(self) -> None:
        a_in = self.a_in.recv().astype(np.int64)
        if self.reset_interval and self.time_step % self.reset_interval == self.reset_offset:
            self.i[:] = 0
            self.h[:] = self.reset_state
            self.hs[:] = self.reset_state
        i = self.i.astype(np.int64)
        h = self.h.astype(np.int64)
        hs = self.hs.astype(np.int64)
        i = np.clip(self._decayed(i, self.input_decay) + np.left_shift(a_in, self.input_shift),
                    -self.state_limit, self.state_limit)
        x = self._lookup(i, self.x_table, self.x_shift)
        pre = (x + np.right_shift(self.gain_fast * h, self.gain_shift)
               + np.right_shift(self.gain_slow * hs, self.gain_shift)
               + np.left_shift(self.bias.astype(np.int64), self.bias_exp))
        pre = np.clip(pre, -self.state_limit, self.state_limit)
        candidate = self._lookup(pre, self.h_table, self.h_shift)
        h_new = candidate + self._decayed(h - candidate, self.update_decay)
        slow_decay = np.where(h > self.gate_threshold, self.slow_decay_active, self.slow_decay_rest)
        hs_new = h + self._decayed(hs - h, slow_decay)
        if self.output == "graded":
            s_out = np.right_shift(np.maximum(h_new, 0), self.message_shift)
        elif self.output == "binary":
            s_out = (h_new > 0).astype(np.int64)
        else:
            s_out = i
        self.i[:] = i
        self.h[:] = h_new
        self.hs[:] = hs_new
        if self.time_step <= self.record_steps:
            self.record[self.time_step - 1] = np.stack([i, h_new, hs_new])
        self.s_out.send(s_out)
