"""Typed configuration: generator, discriminator and training settings, presets, JSON I/O.

Defaults are the paper / reference values of SPEC sections 2-3. Every field is validated
on construction so a bad value in a JSON file or a flag fails with the field's name.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from munit_cli.errors import MunitError

ACTIVATIONS = ("relu", "lrelu", "prelu", "selu", "tanh", "none")
PAD_TYPES = ("reflect", "replicate", "zero")
GAN_TYPES = ("lsgan", "hinge", "nonsaturating")  # nonsaturating: the softplus (logistic) form
WEIGHT_NORMS = ("none", "spectral")
UP_NORMS = ("ln", "adain")  # decoder upsampling blocks: the paper's LayerNorm, or AdaIN there too
RES_BLOCKS = ("post", "pre")  # conv-norm-act (paper) | norm-act-conv (pre-activation, imaginaire)
DIS_KINDS = ("patch", "global", "both")
LR_POLICIES = ("step", "constant")
INITS = ("reference", "orthogonal")
DIFFAUG_OPS = ("color", "translation", "cutout")
RECIPE_GEN_FIELDS = ("weight_norm", "up_norm", "res_block")  # not in the reference implementation's YAML
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: runtime.auto_precision on the run's device


def _check(cond: bool, name: str, value: Any, need: str) -> None:
    if not cond:
        raise MunitError(f"invalid config value {name}={value!r}: {need}")


@dataclass
class GenConfig:
    """Generator (content encoder, style encoder, MLP, decoder) of one domain."""

    dim: int = 64  # channels of the first encoder conv; doubled at each downsampling
    style_dim: int = 8  # length of the style code s
    mlp_dim: int = 256  # hidden width of the style -> AdaIN-parameter MLP
    n_downsample: int = 2  # stride-2 convs in the content encoder (= upsamplings in decoder)
    n_res: int = 4  # residual blocks in the content encoder and in the decoder
    activ: str = "relu"  # activation of conv blocks
    pad_type: str = "reflect"  # padding before every conv (reflect avoids border artefacts)
    weight_norm: str = "none"  # none | spectral (encoder and decoder convs; not the MLP or output conv)
    up_norm: str = "ln"  # ln (paper) | adain: style-modulated instance norm in the upsampling convs too
    res_block: str = "post"  # post: conv-norm-act (paper) | pre: pre-activation norm-act-conv

    def validate(self, prefix: str = "gen") -> None:
        for n in ("dim", "style_dim", "mlp_dim", "n_res"):
            _check(getattr(self, n) >= 1, f"{prefix}.{n}", getattr(self, n), "must be >= 1")
        _check(self.n_downsample >= 0, f"{prefix}.n_downsample", self.n_downsample, "must be >= 0")
        _check(self.activ in ACTIVATIONS, f"{prefix}.activ", self.activ, f"one of {ACTIVATIONS}")
        _check(self.pad_type in PAD_TYPES, f"{prefix}.pad_type", self.pad_type, f"one of {PAD_TYPES}")
        _check(self.weight_norm in WEIGHT_NORMS, f"{prefix}.weight_norm", self.weight_norm, f"one of {WEIGHT_NORMS}")
        _check(self.up_norm in UP_NORMS, f"{prefix}.up_norm", self.up_norm, f"one of {UP_NORMS}")
        _check(self.res_block in RES_BLOCKS, f"{prefix}.res_block", self.res_block, f"one of {RES_BLOCKS}")


@dataclass
class DisConfig:
    """Discriminator of one domain: the paper's multi-scale PatchGAN, a global residual one, or both."""

    dim: int = 64  # channels of the first conv; doubled at each layer
    n_layer: int = 4  # stride-2 4x4 convs per scale
    num_scales: int = 3  # image pyramid levels (full, 1/2, 1/4)
    norm: str = "none"  # normalisation in D (the paper uses none)
    activ: str = "lrelu"  # LeakyReLU(0.2)
    pad_type: str = "reflect"  # padding before every conv
    gan_type: str = "lsgan"  # lsgan (paper) | hinge | nonsaturating
    kind: str = "patch"  # patch (paper) | global: residual D, one score per image | both (losses summed)
    weight_norm: str = "none"  # none | spectral

    def validate(self, prefix: str = "dis") -> None:
        for n in ("dim", "n_layer", "num_scales"):
            _check(getattr(self, n) >= 1, f"{prefix}.{n}", getattr(self, n), "must be >= 1")
        _check(self.norm == "none", f"{prefix}.norm", self.norm, "only 'none' is supported")
        _check(self.activ in ACTIVATIONS, f"{prefix}.activ", self.activ, f"one of {ACTIVATIONS}")
        _check(self.pad_type in PAD_TYPES, f"{prefix}.pad_type", self.pad_type, f"one of {PAD_TYPES}")
        _check(self.gan_type in GAN_TYPES, f"{prefix}.gan_type", self.gan_type, f"one of {GAN_TYPES}")
        _check(self.kind in DIS_KINDS, f"{prefix}.kind", self.kind, f"one of {DIS_KINDS}")
        _check(self.weight_norm in WEIGHT_NORMS, f"{prefix}.weight_norm", self.weight_norm, f"one of {WEIGHT_NORMS}")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the networks of a checkpoint."""

    gen: GenConfig = field(default_factory=GenConfig)
    dis: DisConfig = field(default_factory=DisConfig)
    image_size: int = 256  # training crop / default translation size (shorter side)

    def validate(self) -> None:
        self.gen.validate()
        self.dis.validate()
        _check(self.image_size >= 16, "image_size", self.image_size, "must be >= 16")


RESUMABLE = {"resumable": True}  # TrainConfig field metadata: how a run goes, so `--resume` may change it


@dataclass
class TrainConfig:
    """Optimisation, losses and bookkeeping of a training run (SPEC section 3)."""

    iters: int = field(default=1_000_000, metadata=RESUMABLE)  # total generator/discriminator updates
    batch_size: int = 1  # images per domain per step (per process under DDP)
    lr: float = 1e-4  # Adam learning rate of generators
    lr_dis: float = 1e-4  # Adam learning rate of discriminators
    beta1: float = 0.5  # Adam beta1
    beta2: float = 0.999  # Adam beta2
    weight_decay: float = 1e-4  # L2 added to the gradient (torch Adam weight_decay)
    lr_step: int = 100_000  # halve the learning rate every this many steps
    lr_gamma: float = 0.5  # factor applied every lr_step
    lr_policy: str = "step"  # step: times lr_gamma every lr_step (paper) | constant
    gan_w: float = 1.0  # adversarial loss weight
    recon_x_w: float = 10.0  # image reconstruction weight
    recon_c_w: float = 1.0  # content reconstruction weight
    recon_s_w: float = 1.0  # style reconstruction weight
    recon_x_cyc_w: float = 0.0  # explicit cycle-consistency weight (0 = off)
    vgg_w: float = 0.0  # domain-invariant perceptual loss weight (0 = off; needs VGG16 file)
    ds_w: float = 0.0  # diversity-sensitive loss weight (StarGAN v2; 0 = off): rewards unlike outputs for two random styles
    ds_decay: int = 0  # steps over which ds_w falls linearly to 0 (StarGAN v2); 0 = constant
    ref_p: float = 0.0  # fraction of steps whose cross decodes take the other real image's encoded style (StarGAN v2); 0 = off
    ema: bool = True  # keep an exponential moving average of both generators
    ema_beta: float = 0.999  # EMA decay per step
    ema_start: int = 0  # steps before averaging starts (the EMA copies the weights until then)
    init: str = "reference"  # reference: kaiming G, N(0, 0.02) D | orthogonal (gain 1, imaginaire)
    diffaug: str = ""  # DiffAugment policy on every D input, e.g. "color,translation,cutout" ("" = off)
    center_crop: float = 1.0  # keep this central fraction of each side of a photo before resize/crop (1 = off)
    init_from: str = ""  # checkpoint the weights were warm-started from ("" = fresh init); for the record
    shared_fakes: bool = True  # generate fakes once per step for D and G (see trainer.py)
    seed: int = 0  # seeds data order, augmentation, styles and init
    workers: int = field(default=2, metadata=RESUMABLE)  # DataLoader worker processes
    precision: str = field(default="auto", metadata=RESUMABLE)  # auto | fp32 | bf16 | fp16 autocast, fp32 masters; auto: per device
    log_every: int = field(default=10, metadata=RESUMABLE)  # steps between metric lines (and host syncs)
    save_every: int = field(default=1000, metadata=RESUMABLE)  # steps between checkpoints
    sample_every: int = field(default=1000, metadata=RESUMABLE)  # steps between sample grids
    keep: int = field(default=3, metadata=RESUMABLE)  # step checkpoints kept besides latest
    display_size: int = 4  # display images per domain in sample grids

    def validate(self) -> None:
        for n in ("iters", "batch_size", "lr_step", "log_every", "save_every", "sample_every", "keep", "display_size"):
            _check(getattr(self, n) >= 1, n, getattr(self, n), "must be >= 1")
        for n in ("lr", "lr_dis"):
            _check(getattr(self, n) > 0, n, getattr(self, n), "must be > 0")
        for n in ("weight_decay", "gan_w", "recon_x_w", "recon_c_w", "recon_s_w", "recon_x_cyc_w", "vgg_w", "workers", "seed",
                  "ema_start", "ds_w", "ds_decay"):
            _check(getattr(self, n) >= 0, n, getattr(self, n), "must be >= 0")
        for n in ("beta1", "beta2", "ema_beta", "lr_gamma", "ref_p"):
            _check(0 <= getattr(self, n) <= 1, n, getattr(self, n), "must be in [0, 1]")
        _check(self.precision in PRECISIONS, "precision", self.precision, f"one of {PRECISIONS}")
        _check(self.lr_policy in LR_POLICIES, "lr_policy", self.lr_policy, f"one of {LR_POLICIES}")
        _check(self.init in INITS, "init", self.init, f"one of {INITS}")
        _check(0 < self.center_crop <= 1, "center_crop", self.center_crop, "must be in (0, 1]")
        ops = [op.strip() for op in self.diffaug.split(",")] if self.diffaug.strip() else []
        _check(all(op in DIFFAUG_OPS for op in ops) and len(set(ops)) == len(ops), "diffaug", self.diffaug,
               f"comma-separated, each of {', '.join(DIFFAUG_OPS)} at most once (\"\" = off)")


def resumable_fields() -> tuple[str, ...]:
    """The TrainConfig fields a resumed run may change (the rest of the experiment comes from its checkpoint)."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata.get("resumable"))


PRESETS = ("munit", "small", "tiny", "animals")

ANIMALS_DOC = """`animals`: NVIDIA imaginaire's improved-MUNIT recipe for dog <-> cat
(configs/projects/munit/afhq_dog2cat/ampO1.yaml, SPEC section 6) at the `small` size.

Differences from the paper (`munit`): hinge loss (paper LSGAN); spectral norm on the G
encoder/decoder convs and on D; a global residual D, one score per image (paper: 3-scale
patch D); AdaIN in the two upsampling convs too (paper: LayerNorm); pre-activation residual
blocks; Adam lr 1e-4 for G and 4e-4 for D, constant, no weight decay (paper: 1e-4 both,
halved every 100k steps, weight decay 1e-4); image recon weight 0.1 (paper 10); orthogonal
init, gain 1 (paper: kaiming G, N(0, 0.02) D); EMA from step 1000; dim 32 at 128 px
(paper: 64 at 256).

Differences from imaginaire: dim 32 / 128 px / 5 D blocks (imaginaire: G dim 64, 256 px,
6 D blocks; D base 32 and max 512 as there); batch 1 and 100k steps on a CPU (imaginaire:
16 per GPU x 8 GPUs, 200k steps, AMP); EMA beta 0.999 with our warm-up (imaginaire 0.9999,
plain from step 1000) because runs are short, and the EMA averages the raw weights and
copies the power-iteration vectors (imaginaire averages the normalised weights); the decoder
keeps its tanh output (imaginaire: none); all AdaIN parameters come from the MLP's last
linear layer, which equals imaginaire's per-layer linear map of the 256-d style feature
(orthogonal init per layer, std bias 1 for imaginaire's `1 + gamma`); the global D averages
its last map where imaginaire flattens a 1x1 map (the same at power-of-two sizes); photos
are resized by the shorter side and randomly cropped (imaginaire squashes to 256x256).
`global` D rather than `both`: the source's choice, for single centred animals; try
`--dis-kind both`, `--diffaug color,translation,cutout` and `--center-crop` on scenes."""


def model_preset(name: str) -> ModelConfig:
    """`munit`: the paper. `small`: dim 32 at 128 px (a quarter of the per-pixel FLOPs),
    for CPUs and demos. `tiny`: a few channels at 32 px, for tests. `animals`: see ANIMALS_DOC."""
    if name == "munit":
        return ModelConfig()
    if name == "small":
        return ModelConfig(GenConfig(dim=32), DisConfig(dim=32), image_size=128)
    if name == "tiny":
        return ModelConfig(
            GenConfig(dim=8, mlp_dim=32, n_res=1),
            DisConfig(dim=8, n_layer=3, num_scales=2),
            image_size=32,
        )
    if name == "animals":
        return ModelConfig(GenConfig(dim=32, weight_norm="spectral", up_norm="adain", res_block="pre"),
                           DisConfig(dim=32, kind="global", weight_norm="spectral", gan_type="hinge", pad_type="zero"),
                           image_size=128)
    raise MunitError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}", exit_code=2)


def train_preset(name: str) -> TrainConfig:
    """Paper schedule for `munit`; shorter runs with frequent saves for the others."""
    if name == "munit":
        return TrainConfig()
    if name == "small":
        return TrainConfig(iters=100_000, lr_step=50_000, save_every=1000, sample_every=1000, log_every=20)
    if name == "tiny":
        return TrainConfig(iters=200, lr_step=100_000, save_every=100, sample_every=100, log_every=10, workers=0, display_size=2)
    if name == "animals":  # see ANIMALS_DOC
        return TrainConfig(iters=100_000, lr=1e-4, lr_dis=4e-4, lr_policy="constant", weight_decay=0.0, recon_x_w=0.1,
                           recon_c_w=1.0, recon_s_w=1.0, recon_x_cyc_w=0.0, vgg_w=0.0, init="orthogonal", ema=True,
                           ema_start=1000, save_every=1000, sample_every=1000, log_every=20)
    raise MunitError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}", exit_code=2)


# --- JSON round trip ------------------------------------------------------------------

def architecture_differences(have: ModelConfig, want: ModelConfig, with_dis: bool) -> list[str]:
    """Fields in which `want` builds other networks than `have` ("gen.dim 32 != 64"): every
    gen field, and with `with_dis` every dis field but the loss and the global D's depth."""
    out = [f"gen.{f.name} {getattr(have.gen, f.name)!r} != {getattr(want.gen, f.name)!r}" for f in fields(GenConfig)
           if getattr(have.gen, f.name) != getattr(want.gen, f.name)]
    if with_dis:
        out += [f"dis.{f.name} {getattr(have.dis, f.name)!r} != {getattr(want.dis, f.name)!r}" for f in fields(DisConfig)
                if f.name != "gan_type" and getattr(have.dis, f.name) != getattr(want.dis, f.name)]
        if want.dis.kind != "patch" and global_blocks(have.image_size) != global_blocks(want.image_size):
            out.append(f"image_size {have.image_size} != {want.image_size} (depth of the global D)")
    return out


def global_blocks(image_size: int) -> int:
    """Residual blocks of the global D: halve the image until the map is 4 to 7 pixels."""
    n = 0
    while image_size >> (n + 1) >= 4:
        n += 1
    return max(1, n)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)


def _coerce(name: str, typ: Any, value: Any) -> Any:
    if typ is bool:
        _check(isinstance(value, bool), name, value, "must be true or false")
        return value
    if typ is int:
        _check(isinstance(value, int) and not isinstance(value, bool), name, value, "must be an integer")
        return value
    if typ is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), name, value, "must be a number")
        return float(value)
    if typ is str:
        _check(isinstance(value, str), name, value, "must be a string")
        return value
    raise AssertionError(f"unsupported config field type {typ}")


def from_dict(cls: type, data: dict, prefix: str = "", base: Any = None) -> Any:
    """Build `cls` from `data`, starting from `base` (or the defaults).

    Unknown keys and ill-typed values raise MunitError naming the field."""
    if not isinstance(data, dict):
        raise MunitError(f"invalid config: {prefix or 'top level'} must be a JSON object")
    obj = dataclasses.replace(base) if base is not None else cls()
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise MunitError(f"unknown config key {name!r}: known keys are {', '.join(sorted(known))}")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            value = from_dict(typ, value, prefix=f"{name}.", base=getattr(obj, key))
        else:
            value = _coerce(name, typ, value)
        setattr(obj, key, value)
    return obj


def model_from_json(text: str) -> ModelConfig:
    cfg = from_dict(ModelConfig, json.loads(text))
    cfg.validate()
    return cfg


def train_from_json(text: str) -> TrainConfig:
    cfg = from_dict(TrainConfig, json.loads(text))
    cfg.validate()
    return cfg


@dataclass
class DataConfig:
    """Where the two domains come from (see datasets.resolve_domain)."""

    src: str = ""  # domain a: a name under root, or a folder
    tgt: str = ""  # domain b
    root: str = ""  # data root ("" = names are folders)


@dataclass
class RunConfig:
    """What `munit train` resolves and writes to RUN_DIR/config.json."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)


def load_run_config_file(path: Path, base: RunConfig) -> RunConfig:
    """Apply a JSON file (`{"model": {...}, "train": {...}, "data": {...}}`) on top of `base`.
    A run's own RUN_DIR/config.json is accepted too."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MunitError(f"config file {str(path)!r} does not exist: pass an existing JSON file")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MunitError(f"config file {str(path)!r} is not valid JSON ({e}): fix or remove it")
    if isinstance(data, dict):
        data.pop("munit_version", None)  # written into RUN_DIR/config.json for the record
        data.pop("resolved", None)  # what auto settings resolved to on the run's machine
    cfg = from_dict(RunConfig, data, base=base)
    cfg.model.validate()
    cfg.train.validate()
    return cfg
