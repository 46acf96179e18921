"""Hardware targets: one YAML file per target under ``hw_configs/`` (Loihi 1 chip,
Loihi 2 chip, Oheo Gulch, Kapoho Point), loaded into a frozen :class:`HardwareConfig`.

Every number in those files carries its source in a comment; figures that are not
published are ``null`` (``None`` here) and the mapper skips the checks and
estimates that need them, saying so. A file may ``extends: other.yaml`` (a path
relative to it) and override keys, so a board reuses its chip's sourced figures.
"""
from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Optional, Tuple, Union

import yaml

from neurodeploy.errors import InputError

#: hw_configs/ at the repository root (the YAML files are data, not package code).
HW_CONFIG_DIR = Path(__file__).resolve().parents[2] / "hw_configs"
GENERATIONS = ("loihi1", "loihi2")


class HardwareConfigError(InputError):
    """A hardware config file is missing, malformed, or has a bad value (the message
    names the file and key)."""


@dataclass(frozen=True)
class HardwareConfig:
    """Resources and per-operation figures of one hardware target.

    name: target name; generation: 'loihi1' | 'loihi2'
    chips: chips in the system (1 for a chip, 8 for Kapoho Point)
    cores_per_chip: neuro cores per chip
    neurons_per_core: neurons (compartments) one core holds
    neurons_per_chip / synapses_per_chip: chip-wide maxima (None: not published)
    synaptic_memory_kib_per_core: synaptic memory per core in KiB (1 KiB = 8,192 bits)
    synapse_overhead_bits: bits per synapse stored besides the weight (assumption)
    input_axons_per_core / output_axons_per_core: fan-in / fan-out axons per core
    weight_bits: synaptic weight bits (Lava's num_weight_bits, <= 8)
    state_bits: neuron state (u, v) bits; bias_mantissa_bits: signed;
    threshold_bits: unsigned vth; spike_payload_bits: 1 = binary, > 1 graded
    max_delay_steps: largest synaptic/axonal delay in time steps
    energy_per_synaptic_op_pj / energy_per_neuron_update_pj: picojoules per op
    time_per_step_us: microseconds per time step
    references: citations for the figures
    """

    name: str
    generation: str
    chips: int
    cores_per_chip: int
    neurons_per_core: int
    weight_bits: int
    state_bits: int
    bias_mantissa_bits: int
    threshold_bits: int
    spike_payload_bits: int
    max_delay_steps: int
    neurons_per_chip: Optional[int] = None
    synapses_per_chip: Optional[int] = None
    synaptic_memory_kib_per_core: Optional[float] = None
    synapse_overhead_bits: int = 0
    input_axons_per_core: Optional[int] = None
    output_axons_per_core: Optional[int] = None
    energy_per_synaptic_op_pj: Optional[float] = None
    energy_per_neuron_update_pj: Optional[float] = None
    time_per_step_us: Optional[float] = None
    references: Tuple[str, ...] = ()
    source: Optional[str] = None  # the file it was loaded from

    def __post_init__(self):
        where = self.source or self.name
        if self.generation not in GENERATIONS:
            raise HardwareConfigError(f"{where}: 'generation' must be one of {GENERATIONS}, "
                                      f"got {self.generation!r}")
        positive = ("chips", "cores_per_chip", "neurons_per_core", "weight_bits", "state_bits",
                    "bias_mantissa_bits", "threshold_bits", "spike_payload_bits")
        for key in positive:
            _check_number(where, key, getattr(self, key), integer=True, minimum=1)
        _check_number(where, "max_delay_steps", self.max_delay_steps, integer=True, minimum=0)
        _check_number(where, "synapse_overhead_bits", self.synapse_overhead_bits, integer=True, minimum=0)
        for key in ("neurons_per_chip", "synapses_per_chip", "input_axons_per_core",
                    "output_axons_per_core"):
            if getattr(self, key) is not None:
                _check_number(where, key, getattr(self, key), integer=True, minimum=1)
        for key in ("synaptic_memory_kib_per_core", "energy_per_synaptic_op_pj",
                    "energy_per_neuron_update_pj", "time_per_step_us"):
            if getattr(self, key) is not None:
                _check_number(where, key, getattr(self, key), integer=False, minimum=0, strict=True)
        if self.weight_bits > 8:
            raise HardwareConfigError(f"{where}: 'weight_bits' = {self.weight_bits}: Lava's Dense "
                                      "takes at most 8 weight bits")
        object.__setattr__(self, "references", tuple(str(r) for r in self.references))

    @property
    def cores(self) -> int:
        """Neuro cores in the whole system."""
        return self.chips * self.cores_per_chip

    @property
    def synaptic_memory_bits_per_core(self) -> Optional[int]:
        if self.synaptic_memory_kib_per_core is None:
            return None
        return int(round(self.synaptic_memory_kib_per_core * 1024 * 8))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["references"] = list(self.references)
        return d


def _check_number(where: str, key: str, value, integer: bool, minimum: float, strict: bool = False):
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise HardwareConfigError(f"{where}: '{key}' must be {kind}, got {value!r}")
    if value < minimum or (strict and value <= minimum):
        op = ">" if strict else ">="
        raise HardwareConfigError(f"{where}: '{key}' must be {op} {minimum}, got {value!r}")


_FIELDS = {f.name for f in fields(HardwareConfig)} - {"source"}
_REQUIRED = {f.name for f in fields(HardwareConfig) if f.default is MISSING}


def _load_raw(path: Path, seen: Tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise HardwareConfigError(f"{path}: 'extends' forms a cycle ({' -> '.join(map(str, seen))})")
    if not path.exists():
        raise HardwareConfigError(f"hardware config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise HardwareConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise HardwareConfigError(f"{path}: expected a mapping of keys to values")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    merged = _load_raw((path.parent / str(base)).resolve(), seen + (path,))
    merged.update(raw)
    return merged


def resolve_hw_path(name_or_path: Union[str, os.PathLike]) -> Path:
    """A path to a YAML file, or a target name ('loihi2', 'kapoho_point') looked up
    in :data:`HW_CONFIG_DIR`."""
    p = Path(name_or_path)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        return p
    candidate = HW_CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(q.stem for q in HW_CONFIG_DIR.glob("*.yaml")) if HW_CONFIG_DIR.exists() else []
    raise HardwareConfigError(f"unknown hardware target {str(name_or_path)!r}: not a file, and not one "
                              f"of {known} in {HW_CONFIG_DIR}")


def load_hardware_config(name_or_path: Union[str, os.PathLike]) -> HardwareConfig:
    """Load and validate a hardware config (errors name the file and key)."""
    path = resolve_hw_path(name_or_path).resolve()
    raw = _load_raw(path)
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise HardwareConfigError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(_FIELDS)}")
    missing = sorted(k for k in _REQUIRED if k not in raw)
    if missing:
        raise HardwareConfigError(f"{path}: missing required key(s) {missing}")
    refs = raw.get("references", ())
    if refs is None:
        refs = ()
    if not isinstance(refs, (list, tuple)):
        raise HardwareConfigError(f"{path}: 'references' must be a list of strings")
    raw["references"] = tuple(refs)
    return HardwareConfig(**raw, source=str(path))
