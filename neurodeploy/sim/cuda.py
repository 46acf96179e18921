"""The bit-accurate simulator on a CUDA GPU: the plan, timeline and integer arithmetic
of :mod:`neurodeploy.sim.simulator`, every product and neuron step on the device, the
same spikes, states and messages bit for bit.

Products, each exact:

- binary input into 8-bit dense weights: the int8 x int8 -> int32 tensor-core GEMM
  (``torch._int_mm``; the input width and the neuron count padded to multiples of 8
  with zero weights, as cuBLASLt asks);
- every other product in float64 when the weights' largest |row sum| times the input
  bound is below 2**53 (every partial sum then an exact integer, in any order); else
  over the input's base-2**p digits, each digit's product below 2**53, recombined in
  int64 (the CPU's int64 product, modulo 2**64 alike). No float32 product, so no TF32;
- convolutions as the input's patches (unfold) times the weights in float64, not
  cuDNN, whose Winograd and FFT algorithms round.

Neurons: CUBA-LIF and sigma-delta layers run as Triton kernels
(:mod:`neurodeploy.sim.triton_neurons`) over a chunk of steps; recurrent blocks a step
at a time (the previous step's messages through W_rec added); SRC layers on the host
(:mod:`neurodeploy.sim.src`). The input moves to the device once and is reordered
there a chunk of steps at a time; records and the output come back per chunk.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np
import torch

from neurodeploy.errors import InputError, MissingDependencyError
from neurodeploy.layout import netx_shape
from neurodeploy.network import CubaNeuron, Network, SrcNeuron
from neurodeploy.sim import simulator as cpu
from neurodeploy.sim.frames import held_order, netx_view
from neurodeploy.sim.neurons import init_state, reset_mask
from neurodeploy.sim.products import Synapse
from neurodeploy.sim.simulator import SimResult, SimulationInputError

#: elements per chunk of the largest (steps x batch x neurons) buffer on the device
DEVICE_CHUNK_ELEMENTS = 1 << 27
#: largest integer below which every float64 sum of integers is exact
FLOAT64_EXACT = 2 ** 53
#: outputs of at most this many values are gathered on the device, copied back once
DEVICE_OUTPUT_ELEMENTS = 1 << 28
#: patch values (float64) unfolded at a time by a convolution
UNFOLD_ELEMENTS = 1 << 28
#: inputs of more bytes go to the GPU through pinned buffers of this many bytes
STAGE_BYTES = 1 << 26


def device_for(name: str) -> torch.device:
    """The torch device for a ``--device`` value, checked: ``cpu``, ``cuda`` or
    ``cuda:N``. A CUDA device without a visible GPU or without Triton raises
    :class:`MissingDependencyError` (exit code 6)."""
    name = str(name)
    if name == "cpu":
        return torch.device("cpu")
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise InputError(f"--device: expected cpu, cuda or cuda:N, got {name!r}")
    if not torch.cuda.is_available():
        raise MissingDependencyError(
            f"--device {name}: torch {torch.__version__} sees no CUDA GPU on this machine; use --device cpu")
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    try:
        import triton  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"--device {name}: the simulator's neuron kernels need Triton "
                                     "(pip install triton)") from None
    return dev


def usable(name: str) -> bool:
    """Whether the simulator can run on the device ``name`` (see :func:`device_for`)."""
    try:
        device_for(name)
    except (InputError, MissingDependencyError):
        return False
    return True


class _DeviceSynapse(Synapse):
    """A planned :class:`~neurodeploy.sim.products.Synapse` with its weights on the
    device and the device's exact products (see the module docstring)."""

    def __init__(self, host: Synapse, device: torch.device, input_bound: float):
        self.__dict__.update(host.__dict__)
        self.split_bits = 0  # the host's digit conv (numba) is replaced by _exact
        weights = [(d, w.to(torch.float64)) for d, w in host.weights]
        row_sum = max([float(w.abs().reshape(w.shape[0], -1).sum(1).max()) for _, w in weights
                       if w.numel()] + [1.0])
        self.device_bound = row_sum * max(float(input_bound), 1.0)
        exact = self.device_bound < FLOAT64_EXACT
        # the input's dtype in __call__: float64, or int64 split into digits in _exact
        self.dtype = torch.float64 if exact else torch.int64
        self.digit_bits = 0 if exact else int(math.floor(math.log2(FLOAT64_EXACT / row_sum)))
        self.weights = [(d, w.to(device)) for d, w in weights]
        if self.conv:  # the output's (H', W'), as torch's conv2d gives it
            (_, h, w_in), (kh, kw) = self.in_shape, weights[0][1].shape[2:]
            (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
            self.out_hw = ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w_in + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
        self.int8 = bool(host.int8)
        if self.int8:  # (N, K) int8, zero-padded; passed transposed (column-major), as cuBLASLt's IMMA wants
            w8 = host.w_int8.T
            n, k = w8.shape
            self.n_out, self.k_pad = n, (-k) % 8
            padded = torch.zeros((n + (-n) % 8, k + self.k_pad), dtype=torch.int8)
            padded[:n, :k] = w8
            self.w8 = padded.to(device)

    def _apply(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        f, b = x.shape[:2]
        if self.conv:  # input and output held as (H, W, C)
            c_in, h, w_in = self.in_shape
            y = self._exact(lambda d: self._conv(d, w), x.reshape(f * b, h, w_in, c_in).permute(0, 3, 1, 2))
            return y.permute(0, 2, 3, 1).reshape(f, b, -1)
        if x.dtype == torch.int8:  # binary input
            rows = x.reshape(f * b, -1)
            if self.int8 and rows.shape[0] > 16:  # cuBLASLt's int8 GEMM takes more than 16 rows
                if self.k_pad:
                    rows = torch.nn.functional.pad(rows, (0, self.k_pad))
                y = self._int8_product(rows)
                if y is not None:
                    return (y if y.shape[1] == self.n_out else y[:, :self.n_out]).reshape(f, b, -1)
            x = x.to(torch.float64)
        return self._exact(lambda d: d @ w.T, x.reshape(f, b, -1))

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Exact conv of integer-valued float64 x (N, C, H, W) -> (N, O, H', W') (a
        channels-last view): the input's patches (unfold) times the weights, one batched
        GEMM per slice of at most UNFOLD_ELEMENTS patch values (PyTorch's own CUDA conv
        without cuDNN runs one image at a time)."""
        n = x.shape[0]
        o, cg, kh, kw = w.shape
        g = self.groups
        oh, ow = self.out_hw
        per_image = cg * g * kh * kw * oh * ow
        wg = w.reshape(g, o // g, cg * kh * kw).transpose(1, 2)  # (g, K, O/g)
        out = torch.empty((n, oh * ow, o), dtype=torch.float64, device=x.device)
        step = max(1, UNFOLD_ELEMENTS // per_image)
        for i in range(0, n, step):
            cols = torch.nn.functional.unfold(x[i:i + step], (kh, kw), dilation=self.dilation,
                                              padding=self.padding, stride=self.stride)
            m = cols.shape[0]
            y = torch.matmul(cols.reshape(m, g, cg * kh * kw, oh * ow).transpose(2, 3), wg)  # (m, g, L, O/g)
            out[i:i + m] = y.permute(0, 2, 1, 3).reshape(m, oh * ow, o)
        return out.reshape(n, oh, ow, o).permute(0, 3, 1, 2)

    def _int8_product(self, rows: torch.Tensor) -> Optional[torch.Tensor]:
        """rows (R, K) int8 @ the int8 weights -> int32 (R, N padded), or None when this
        build of PyTorch takes neither weight layout (then float64 from here on)."""
        for weights in (self.w8.t(), self.w8.t().contiguous()):  # column-major first (IMMA's)
            try:
                y = torch._int_mm(rows, weights)
            except RuntimeError:
                continue
            if weights.is_contiguous():  # keep the layout that works
                self.w8 = weights.t()
            return y
        self.int8 = False
        return None

    def _exact(self, product, x: torch.Tensor) -> torch.Tensor:
        """``product(x)`` exactly: float64 within the bound, else over base-2**p digits
        of the int64 input (the top one signed), each product below 2**53, summed in
        int64."""
        if self.digit_bits == 0:
            return product(x.to(torch.float64))
        p = self.digit_bits
        x = x.to(torch.int64)
        lo, hi = (int(v) for v in torch.aminmax(x)) if x.numel() else (0, 0)
        n = 1
        while max(-lo, hi) >= 1 << (p * n):
            n += 1
        total = None
        for k in range(n):
            digit = x >> (p * k)
            if k < n - 1:
                digit = digit & ((1 << p) - 1)
            y = product(digit.to(torch.float64)).to(torch.int64) << (p * k)
            total = y if total is None else total + y
        return total


class _DeviceFrames:
    """The input (B, F, T) on the device in netx's flat feature order, handed out a
    chunk of steps at a time as (steps, B, F) in the simulator's held order."""

    def __init__(self, x: torch.Tensor, netx_shape, feed_shape, binary: bool):
        self.x, self.binary = x, binary
        self.batch, self.steps = x.shape[0], x.shape[-1]
        nd = len(netx_shape)
        perm = (np.arange(int(np.prod(netx_shape))).reshape(netx_shape)
                .transpose(*range(nd - 1, -1, -1)).reshape(-1))[held_order(feed_shape)]
        self.perm = None if np.array_equal(perm, np.arange(perm.size)) else torch.as_tensor(perm, device=x.device)

    def chunk(self, start: int, c: int) -> torch.Tensor:
        t0 = start % self.steps
        if t0 + c <= self.steps:
            xs = self.x[:, :, t0:t0 + c]
        else:  # cyclic beyond T (a RingBuffer source)
            tidx = torch.arange(start, start + c, device=self.x.device) % self.steps
            xs = self.x.index_select(2, tidx)
        y = xs.permute(2, 0, 1)
        y = y.contiguous() if self.perm is None else y.index_select(2, self.perm)
        return y.view(torch.bool) if self.binary else y


def _device_inputs(network: Network, inputs, feed_shape, device: torch.device):
    """The CPU simulator's input checks (same messages), done on the device ->
    (_DeviceFrames, single, bound)."""
    netx = netx_shape(feed_shape)
    if isinstance(inputs, torch.Tensor):
        t = inputs.detach()
        if t.dtype == torch.bool:
            t = t.to(torch.int8)
        if t.is_complex():
            raise SimulationInputError(f"inputs must be integers (spikes or graded values), got dtype {t.dtype}")
    else:
        arr = np.asarray(inputs)
        if arr.dtype == np.bool_:
            arr = arr.view(np.int8)
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise SimulationInputError(f"inputs must be integers (spikes or graded values), got dtype {arr.dtype}")
        if arr.dtype in (np.uint16, np.uint32, np.uint64):
            arr = arr.astype(np.int64)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    single = cpu.is_single_sample(t.shape, netx)
    if single:
        t = t[None]
    t = _to_device(t, device)
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or not bool((torch.round(t) == t).all()):
            raise SimulationInputError("inputs must hold integers (Loihi fixed point); got non-integer values")
    mn, mx = (int(v) for v in torch.aminmax(t)) if t.numel() else (0, 0)
    bound = max(abs(mn), abs(mx))
    if bound >= 2 ** 31:
        raise SimulationInputError("inputs exceed Lava's int32 message range")
    binary = t.numel() > 0 and mn >= 0 and bound <= 1
    if binary:
        t = t.to(torch.int8)
    elif t.is_floating_point() or t.dtype == torch.uint8:
        t = t.to(torch.int64)
    t = t.reshape(t.shape[0], -1, t.shape[-1])
    return _DeviceFrames(t, netx, tuple(feed_shape), binary), single, bound


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor to a CUDA device through two pinned buffers (the host copy of one
    piece overlaps the transfer of the other: pageable memory goes over at a fraction
    of the bus's rate); small tensors, other devices and tensors already there as is."""
    if t.device == device or device.type != "cuda" or t.device.type != "cpu" \
            or t.numel() * t.element_size() <= 2 * STAGE_BYTES:
        return t.to(device)
    src = t.contiguous().reshape(-1)
    out = torch.empty(src.shape, dtype=src.dtype, device=device)
    piece = STAGE_BYTES // src.element_size()
    buffers = [torch.empty(piece, dtype=src.dtype, pin_memory=True) for _ in range(2)]
    done = [None, None]
    for i, start in enumerate(range(0, src.numel(), piece)):
        k = min(piece, src.numel() - start)
        buf = buffers[i % 2]
        if done[i % 2] is not None:
            done[i % 2].synchronize()  # its last transfer has left the buffer
        buf[:k].copy_(src[start:start + k])
        out[start:start + k].copy_(buf[:k], non_blocking=True)
        done[i % 2] = torch.cuda.Event()
        done[i % 2].record()
    torch.cuda.current_stream(device).synchronize()
    return out.reshape(t.shape)


def _state(layer, batch: int, device: torch.device) -> dict:
    n = int(np.prod(layer.shape))
    if isinstance(layer.neuron, SrcNeuron):
        return init_state(layer, batch)  # host state: SRC layers run on the host
    z = torch.zeros(batch * n, dtype=torch.int64, device=device)
    st = {"rec": torch.zeros((batch, n), dtype=torch.int64, device=device),
          "bias": None if layer.bias is None else layer.bias.to(torch.int64).to(device)}
    if isinstance(layer.neuron, CubaNeuron):
        from neurodeploy.sim import triton_neurons as tn
        st.update(u=z, v=z.clone(), parameters=tn.cuba_parameters(layer.neuron.parameters(), device))
    else:
        st.update(sigma=z, act=z.clone(), residue=z.clone())
    return st


def simulate_on(device: torch.device, network: Network, inputs, steps: Optional[int] = None,
                reset_interval: Optional[int] = None, reset_offset: int = 0, record: bool = False,
                input_bias: Optional[np.ndarray] = None, chunk_steps: Optional[int] = None,
                progress: bool = False) -> SimResult:
    """:func:`neurodeploy.sim.simulator.simulate` with products and neurons on ``device``
    (a checked CUDA device, see :func:`device_for`; a CPU device runs the same code on
    CPU tensors, with the kernels under Triton's interpreter). ``inputs`` may also be a
    torch tensor (a CUDA tensor stays where it is)."""
    return _simulate(device, network, inputs, steps, reset_interval, reset_offset, record,
                     input_bias, chunk_steps, progress)


def _simulate(device, network, inputs, steps, reset_interval, reset_offset, record, input_bias,
              chunk_steps, progress) -> SimResult:
    layers, feed_shape, _ = cpu._plan(network, input_bias, 1.0)
    x, single, in_bound = _device_inputs(network, inputs, feed_shape, device)
    if in_bound > 1:  # re-plan with the real input bound (graded inputs into a synapse)
        layers, feed_shape, _ = cpu._plan(network, input_bias, in_bound)
    t_in, batch = x.steps, x.batch
    steps = cpu.run_length(steps, t_in, reset_interval)
    widest = max([int(np.prod(feed_shape))] + [int(np.prod(l.shape)) for l in layers])
    chunk = chunk_steps or max(1, min(steps, DEVICE_CHUNK_ELEMENTS // max(1, batch * widest)))

    synapses, recurrent = [], []
    for l in layers:
        synapses.append(None if l.synapse is None else _DeviceSynapse(
            l.synapse, device, 2.0 ** 31 if l.synapse.graded_input else 1.0))
        recurrent.append(None if l.rec is None else _DeviceSynapse(
            l.rec, device, 2.0 ** 31 if l.rec.graded_input else 1.0))
    states = [_state(l, batch, device) for l in layers]
    tails = [None if s is None else
             torch.zeros((s.max_delay + 1, batch, int(np.prod(s.in_shape))),
                         dtype=torch.int64 if s.graded_input else torch.bool, device=device)
             for s in synapses]
    out_layer = layers[-1]
    netx_out = netx_shape(out_layer.shape)
    # the output stays on the device until the end when it is small (a copy to the host
    # per chunk would wait for the GPU each time)
    out_elements = batch * int(np.prod(netx_out)) * steps
    spikes_t = torch.empty((batch,) + netx_out + (steps,), dtype=torch.int32,
                           device=device if out_elements <= DEVICE_OUTPUT_ELEMENTS else "cpu")
    rec: Dict[str, List[torch.Tensor]] = {}
    leads: List[Optional[torch.Tensor]] = [None] * len(layers)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, unit="step", desc=f"simulating {batch} sample(s) on {device}",
                   leave=False, disable=None)
    for start in range(0, steps, chunk):
        c = min(chunk, steps - start)
        s = x.chunk(start, c)
        for li, layer in enumerate(layers):
            a, lead = cpu.synapse_input(synapses[li], s, c, batch, leads, tails, li)
            s = _run_neurons(layer, recurrent[li], a, states[li], start, reset_interval, reset_offset,
                             rec if record else None, lead, device)
            s = s.reshape(c, batch, -1)
        spikes_t[..., start:start + c].copy_(netx_view(s, out_layer.shape).to(torch.int32))
        if bar is not None:
            bar.update(c)
    if bar is not None:
        bar.close()
    return cpu.sim_result(spikes_t.cpu().numpy(), rec if record else None, layers, single)


def _run_neurons(layer, rec_syn, a: torch.Tensor, st: dict, start: int, reset_interval, reset_offset,
                 rec, lead: Optional[torch.Tensor], device) -> torch.Tensor:
    """The device form of :func:`neurodeploy.sim.neurons.run_neurons`: a (c, B, N)
    synaptic input of the chunk -> messages (c, B, N) on the device; records go to
    ``rec`` as host tensors."""
    from neurodeploy.sim import triton_neurons as tn

    c, bsz = a.shape[:2]
    neuron = layer.neuron
    phase = None
    if reset_interval and isinstance(neuron, (CubaNeuron, SrcNeuron)):
        phase = (reset_offset + 1 + layer.neuron_index) % reset_interval
    if isinstance(neuron, SrcNeuron):
        from neurodeploy.sim.src import run_src_neurons
        if layer.rec is not None:
            raise NotImplementedError(f"layer {layer.index}: recurrent SRC blocks are not simulated")
        out = run_src_neurons(layer, a.cpu(), st, reset_mask(start, c, reset_interval, phase), rec,
                              None if lead is None else lead.cpu())
        return out.to(device)
    # made on the device: a host-to-device copy of pageable memory would wait for the GPU
    if phase is None:
        reset = torch.zeros(c, dtype=torch.int8, device=device)
    else:
        reset = ((torch.arange(start + 1, start + c + 1, device=device) % reset_interval) == phase).to(torch.int8)
    n = a[0].numel()
    if a.dtype == torch.bool:
        a = a.view(torch.int8)
    a = a.reshape(c, n)
    first = None if lead is None else lead.reshape(n).to(a.dtype)
    record = rec is not None
    cuba = isinstance(neuron, CubaNeuron)
    out = torch.empty((c, n), dtype=torch.int8 if cuba else torch.int64, device=device)
    rec_a = torch.empty((c, n), dtype=torch.int64, device=device) if record else None
    rec_b = torch.empty((c, n), dtype=torch.int64, device=device) if record and cuba else None
    kind = None
    if not cuba:
        kind = (tn.SD_INPUT if layer.is_input else
                tn.SD_SIGMA_OUTPUT if neuron.sigma_output else tn.SD_HIDDEN)
        bias = st["bias"] if kind == tn.SD_HIDDEN else None

    def step(ak, ks, first_k=None):  # steps ks of the chunk over input ak
        if cuba:
            tn.cuba_steps(ak, st["parameters"], st["bias"], reset[ks], st["u"], st["v"], out[ks], first_k,
                          None if rec_a is None else rec_a[ks], None if rec_b is None else rec_b[ks])
        else:
            tn.sigma_delta_steps(ak, kind, neuron.threshold or 0, bias, st["sigma"], st["act"], st["residue"],
                                 out[ks], first_k, None if rec_a is None else rec_a[ks])

    if rec_syn is None:
        step(a.contiguous(), slice(0, c), first)
    else:  # recurrent: a step at a time, the previous step's messages through W_rec added
        last = st["rec"]
        for k in range(c):
            ak = a[k] if first is None else (first if k == 0 else a[k - 1])
            ak = ak.to(torch.int64) + rec_syn(last.reshape(1, bsz, -1), 1)[0].reshape(-1).to(torch.int64)
            step(ak.reshape(1, n), slice(k, k + 1))
            last = out[k].reshape(bsz, -1).to(torch.int64)
        st["rec"] = last
    out = out.reshape(c, bsz, -1)
    if cuba:
        out = out.view(torch.bool)
    if record:
        i = layer.index
        if cuba:
            rec.setdefault(f"u/{i}", []).append(rec_a.reshape(c, bsz, -1).cpu())
            rec.setdefault(f"v/{i}", []).append(rec_b.reshape(c, bsz, -1).cpu())
        else:
            rec.setdefault(f"sigma/{i}", []).append(rec_a.reshape(c, bsz, -1).cpu())
        rec.setdefault(f"s/{i}", []).append(out.to(torch.int32).cpu())
    return out
