"""Run configuration: YAML validated by pydantic before any work starts.

Unknown keys and ill-typed values are errors that name the key
(``ConfigError: train.lr2: unknown key``). :func:`load_config` returns a frozen
:class:`RunConfig`; ``resolved()`` is what a run writes next to its results.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from neurodeploy.errors import InputError

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
DEFAULT_CONFIG = EXAMPLES_DIR / "digits.yaml"


class ConfigError(InputError):
    """A configuration file is missing, unparsable, or has a bad key or value."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class DataConfig(_Strict):
    # digits ships with scikit-learn; the others are read from data.dir
    name: Literal["digits", "fashion_mnist", "nmnist", "shd", "cifar10", "cifar100", "imagenette"] = "digits"
    dir: Optional[str] = None  # local directory with the published files
    encoding: Literal["rate", "latency"] = "rate"  # images only
    steps: int = Field(20, ge=1, le=100_000)  # time steps per sample
    window: Optional[float] = Field(None, gt=0)  # event data: time span binned into `steps`
    test_fraction: float = Field(0.2, gt=0, lt=1)  # digits only
    limit: Optional[int] = Field(None, ge=1)  # samples per split, for quick runs
    polarity: Literal["split", "merge"] = "split"  # N-MNIST: 2 polarity channels, or merged
    counts: bool = False  # event data: bins hold event counts instead of 0/1 spikes
    image_size: Optional[int] = Field(None, ge=1)  # imagenette: side of the square input (None: 64)


class NeuronConfig(_Strict):
    current_decay: float = Field(0.25, ge=0, le=1)  # fraction per step (iDecay / 4096)
    voltage_decay: float = Field(0.03, ge=0, le=1)  # fraction per step (vDecay / 4096)
    threshold: float = Field(1.0, gt=0)  # weight units


class SurrogateConfig(_Strict):
    scale: float = Field(3.0, gt=0)  # dS/dV = height / (scale |v - threshold| + 1)^2
    height: float = Field(1.0, gt=0)  # the surrogate's peak, at v = threshold
    # Truncate the surrogate to |v - threshold| < band (None: no truncation). The sparse
    # backward needs a band; with dense BPTT a band lets silent neurons die (no gradient).
    band: Optional[float] = Field(None, gt=0)
    # Deep networks: set each layer's height so its backward gain is 1 (train.depth).
    tune_height: bool = False


class ConvConfig(_Strict):
    channels: int = Field(ge=1)  # output channels
    kernel: int = Field(ge=1)  # square kernel size
    stride: int = Field(1, ge=1)  # in both directions
    padding: int = Field(0, ge=0)  # zeros on each side


class BlockStageConfig(_Strict):
    """A stage of residual blocks (model.blocks): ``count`` blocks of two CUBA-LIF
    layers each (3x3 conv, or dense on a flat input) of ``channels`` channels (or
    neurons); the first block of the stage has ``stride`` and, when it changes the
    shape, a 1x1 projection shortcut (train.residual)."""
    channels: int = Field(ge=1)
    count: int = Field(1, ge=1)
    stride: int = Field(1, ge=1)


class SrcConfig(_Strict):
    """The Spiking Recurrent Cell's constants (model.cell: src; docs/src.md gives sources)."""
    alpha: float = Field(0.9, ge=0, lt=1)  # keep factor of the input current per step
    rho: float = Field(3.0, gt=0)  # x = rho tanh(i / rho)
    r: float = Field(2.0, ge=-8, le=7.9375)  # positive feedback of h
    r_s: float = Field(-7.0, ge=-8, le=7.9375)  # negative feedback of the slow state
    z: float = Field(0.0, ge=0, lt=1)  # update gate of h
    z_hyp: float = Field(0.9, ge=0, lt=1)  # keep factor of h_s while h <= gate_threshold
    z_dep: float = Field(0.0, ge=0, lt=1)  # keep factor of h_s while h > gate_threshold
    gate_threshold: float = Field(0.5, ge=-1, le=1)  # h above it switches h_s to z_dep
    bias_init: float = Field(-6.0, ge=-64, le=63)  # initial bias b_h of every SRC neuron
    bias_max: float = Field(-4.0, ge=-64, le=63)  # b_h is clamped to <= bias_max
    detach_recurrence: bool = True  # no gradient through h, h_s across steps
    initial_state: float = Field(0.0, ge=-1, le=1)  # h and h_s at each sample's start (docs/src.md)
    output: Literal["graded", "binary"] = "graded"  # max(h, 0) (6-bit messages) or h > 0


class ModelConfig(_Strict):
    cell: Literal["cuba", "src"] = "cuba"  # hidden neurons: CUBA-LIF or Spiking Recurrent Cell
    src: SrcConfig = SrcConfig()
    # Reshape each input sample to this shape (e.g. [1, 8, 8] to run digits through conv layers).
    input_shape: Optional[List[int]] = None
    conv: List[ConvConfig] = Field(default_factory=list)  # conv layers before the dense ones
    # stages of residual blocks after the conv layers (ResNet-style; docs/residual.md)
    blocks: List[BlockStageConfig] = Field(default_factory=list)
    # widths of dense CUBA-LIF layers before the blocks on a flat input: the stem of dense blocks
    dense_stem: List[int] = Field(default_factory=list)
    shortcuts: bool = True  # false: the blocks' layers as a plain stack (no shortcuts)
    hidden: List[int] = Field(default_factory=lambda: [128])  # hidden dense layers' widths
    batch_norm: bool = False  # on input currents; folded at export (needs current_decay 1.0)
    # every hidden dense layer recurrent: W_rec feeds its previous step's spikes back (netx dense_rec)
    recurrent: bool = False
    neuron: NeuronConfig = NeuronConfig()
    surrogate: SurrogateConfig = SurrogateConfig()


class TrainConfig(_Strict):
    epochs: int = Field(15, ge=0)  # float training epochs
    batch_size: int = Field(32, ge=1)  # global batch (all processes together)
    lr: float = Field(3e-3, gt=0)  # Adam's learning rate
    # constant, or cosine: lr x (1 + cos(pi epoch / epochs)) / 2 in each training phase
    lr_schedule: Literal["constant", "cosine"] = "constant"
    logit_scale: float = Field(0.3, gt=0)  # cross-entropy over output spike counts x this
    backward: Literal["dense", "sparse"] = "dense"  # BPTT, or the sparse backward (needs surrogate.band)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    hardware_aware_epochs: int = Field(0, ge=0)  # fine-tuning epochs with the chip's forward
    hardware_aware_lr: float = Field(5e-4, gt=0)  # Adam's learning rate while fine-tuning
    # also train these neuron parameters during hardware-aware fine-tuning (default: fixed)
    hardware_aware_learn: List[Literal["threshold", "decays"]] = Field(default_factory=list)


class LavaConfig(_Strict):
    enabled: bool = True  # run the test samples on Lava's CPU models (needs CPython 3.10)
    samples: Optional[int] = Field(None, ge=1)  # test samples run on Lava (None: the whole test set)


class HardwareConfigRef(_Strict):
    # hw_configs/ name or path of the target for the resource/energy report (None: skip)
    config: Optional[str] = "loihi2"
    activity_samples: int = Field(32, ge=0)  # test samples simulated for the activity estimate


class RunConfig(_Strict):
    name: str = "run"  # the run directory's name: runs/<name>/
    seed: int = 0  # initialisation, shuffling and encoding (the same seed gives the same run)
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    lava: LavaConfig = LavaConfig()
    hardware: HardwareConfigRef = HardwareConfigRef()

    @model_validator(mode="after")
    def _src_dense_only(self):
        if self.model.cell == "src":
            for key, bad in (("model.conv", bool(self.model.conv)), ("model.batch_norm", self.model.batch_norm),
                             ("train.backward: 'sparse'", self.train.backward == "sparse"),
                             ("model.surrogate.tune_height", self.model.surrogate.tune_height),
                             ("train.hardware_aware_learn", bool(self.train.hardware_aware_learn))):
                if bad:
                    raise ValueError(f"model.cell: 'src' builds dense SRC layers trained with dense BPTT; "
                                     f"{key} is not supported with it")
            if self.model.src.bias_init > self.model.src.bias_max:
                raise ValueError(f"model.src.bias_init {self.model.src.bias_init} exceeds "
                                 f"model.src.bias_max {self.model.src.bias_max}")
        return self

    @model_validator(mode="after")
    def _residual_blocks(self):
        if not self.model.blocks:
            if self.model.dense_stem:
                raise ValueError("model.dense_stem: the stem of residual blocks; without model.blocks "
                                 "list the dense layers in model.hidden")
            return self
        for key, bad in (("model.cell: 'src'", self.model.cell == "src"),
                         ("model.recurrent", self.model.recurrent),
                         ("train.backward: 'sparse'", self.train.backward == "sparse")):
            if bad:
                raise ValueError(f"model.blocks builds residual CUBA-LIF blocks trained with dense BPTT; "
                                 f"{key} is not supported with them")
        if self.model.dense_stem and self.model.conv:
            raise ValueError("model.dense_stem: a dense stem takes the flat input; model.conv layers "
                             "make a conv stem instead; use one of them")
        if self.model.dense_stem and any(b.stride != 1 for b in self.model.blocks):
            raise ValueError("model.blocks: blocks after model.dense_stem are dense and have no stride; "
                             "set every stage's stride to 1")
        if self.model.shortcuts and not (self.model.conv or self.model.dense_stem):
            raise ValueError("model.blocks: a shortcut starts at a layer of neurons, not at the network's "
                             "input spikes; put a stem layer before the first block (model.conv for conv "
                             "blocks, model.dense_stem for dense blocks on a flat input)")
        return self

    @model_validator(mode="after")
    def _sparse_needs_band(self):
        if self.data.name == "digits" and self.data.dir is not None:
            raise ValueError(f"data.dir: the digits dataset ships with scikit-learn and reads no "
                             f"directory; remove data.dir (or --data-dir), got {self.data.dir!r}")
        if self.data.image_size is not None and self.data.name != "imagenette":
            raise ValueError(f"data.image_size: sets imagenette's image side; {self.data.name} images "
                             "keep their published size; remove it")
        if self.train.backward == "sparse" and self.model.surrogate.band is None:
            raise ValueError("train.backward: 'sparse' needs a truncated surrogate: set model.surrogate.band")
        if self.train.backward == "sparse" and self.model.batch_norm:
            raise ValueError("train.backward: 'sparse' does not support model.batch_norm layers")
        if self.train.backward == "sparse" and self.model.conv:
            raise ValueError("train.backward: 'sparse' exists for dense CUBA-LIF layers only; "
                             "model.conv layers need backward 'dense'")
        if self.model.recurrent and not self.model.hidden:
            raise ValueError("model.recurrent: true makes the hidden dense layers recurrent; "
                             "model.hidden lists none")
        if self.model.recurrent and self.model.batch_norm:
            raise ValueError("model.recurrent: recurrent layers cannot have batch norm "
                             "(model.batch_norm: true); set one of them to false")
        if self.train.hardware_aware_epochs and self.model.conv and not self.model.blocks:
            raise ValueError("train.hardware_aware_epochs: hardware-aware fine-tuning supports dense "
                             "layers and residual networks (model.blocks) only; set it to 0 with "
                             "model.conv layers")
        return self

    def resolved(self) -> dict:
        return self.model_dump(mode="json")

    def with_overrides(self, **dotted) -> "RunConfig":
        """Copy with ``section.key=value`` overrides (validated like the file)."""
        d = self.resolved()
        for key, value in dotted.items():
            if value is None:
                continue
            node = d
            *path, last = key.split(".")
            for p in path:
                node = node[p]
            node[last] = value
        return parse_config(d, source="overrides")


def _format(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key")
        elif not loc:  # a check across keys: its message names them
            lines.append(str(err["msg"]).removeprefix("Value error, "))
        else:
            lines.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def parse_config(data: dict, source: str = "<dict>") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_format(e)}") from None


def load_config(path=None) -> RunConfig:
    """Read and validate a YAML run configuration (default: examples/digits.yaml)."""
    from neurodeploy.checks import read_config_mapping

    path = Path(path) if path is not None else DEFAULT_CONFIG
    data = read_config_mapping(path)  # a mapping, or one ConfigError line (empty file included)
    data.setdefault("name", path.stem)
    return parse_config(data, source=str(path))
