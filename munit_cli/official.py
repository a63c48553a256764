"""Import of the authors' reference checkpoints (SPEC section 4): the name mapping between
their generator state dicts and ours, their YAML config, and the conversion to our format.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import yaml
from torch import Tensor

from munit_cli.atomic import refuse_overwrite
from munit_cli.checkpoint import file_size, load_module, save_generators
from munit_cli.config import RECIPE_GEN_FIELDS, DisConfig, GenConfig, ModelConfig, from_dict
from munit_cli.errors import MunitError
from munit_cli.models import STYLE_DOWNSAMPLE, Generator, build_generator, count_params

# Buffers the reference stores but never uses: the AdaIN layers' dummy running_mean /
# running_var, and torch-0.3 instance-norm running statistics.
DROPPED_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
GEN_FIELDS = tuple(f.name for f in fields(GenConfig))  # understood in the YAML's gen section
REQUIRED_GEN_FIELDS = tuple(k for k in GEN_FIELDS if k not in RECIPE_GEN_FIELDS)  # the reference's own fields


# --- names ------------------------------------------------------------------------------------
#
#   ours                                   reference
#   enc_style.model.{i}.*                  enc_style.model.{i}.*          (i < 5; 5 is the pooling)
#   enc_style.proj.*                       enc_style.model.6.*
#   enc_content.model.{i}.*                enc_content.model.{i}.*        (i <= n_downsample)
#   enc_content.model.{n+1+r}.conv{j+1}.*  enc_content.model.{n+1}.model.{r}.model.{j}.*
#   dec.res.{r}.conv{j+1}.*                dec.model.0.model.{r}.model.{j}.*
#   dec.up.{2u+1}.*                        dec.model.{2u+2}.*             (odd: Upsample has no weights)
#   dec.out.*                              dec.model.{2n+1}.*
#   mlp.model.{2i}.* / .{2i+1}.*           mlp.model.{i}.fc.* / .activation.*
#   ...activ.* (PReLU weights)             ...activation.*

def _block(j: str) -> str:
    """'conv1' -> '0': a residual block's convs are a Sequential in the reference."""
    return str(int(j[len("conv"):]) - 1)


def reference_key(key: str, gen: GenConfig) -> str:
    """Our generator state-dict name -> the reference's (see the table above)."""
    net, *rest = key.split(".")
    n = gen.n_downsample
    if net == "enc_style" and rest[0] == "proj":
        rest = ["model", str(STYLE_DOWNSAMPLE + 2)] + rest[1:]
    elif net == "enc_content" and int(rest[1]) > n:
        rest = ["model", str(n + 1), "model", str(int(rest[1]) - n - 1), "model", _block(rest[2])] + rest[3:]
    elif net == "dec" and rest[0] == "res":
        rest = ["model", "0", "model", rest[1], "model", _block(rest[2])] + rest[3:]
    elif net == "dec" and rest[0] == "up":
        rest = ["model", str(int(rest[1]) + 1)] + rest[2:]
    elif net == "dec" and rest[0] == "out":
        rest = ["model", str(2 * n + 1)] + rest[1:]
    elif net == "mlp":
        i = int(rest[1])
        rest = ["model", str(i // 2), "fc" if i % 2 == 0 else "activation"] + rest[2:]
    return ".".join([net] + ["activation" if p == "activ" else p for p in rest])


def reference_names(gen: GenConfig) -> dict[str, str]:
    """{our name: reference name} for every tensor of one generator."""
    return {k: reference_key(k, gen) for k in Generator(gen).state_dict()}


def to_reference(gen: Generator) -> dict[str, Tensor]:
    """Our generator as a reference-layout state dict, dummy AdaIN buffers included."""
    sd = {reference_key(k, gen.cfg): v for k, v in gen.state_dict().items()}
    for r in range(gen.cfg.n_res):
        for j in range(2):
            pre = f"dec.model.0.model.{r}.model.{j}.norm."
            sd[pre + "running_mean"] = torch.zeros(gen.dec.adain_dim)
            sd[pre + "running_var"] = torch.ones(gen.dec.adain_dim)
    return sd


def from_reference(sd: dict[str, Tensor], gen: GenConfig, what: str) -> tuple[dict[str, Tensor], int]:
    """A reference generator state dict -> ours, checking every name and shape.

    Returns (tensors, number of dropped buffers); raises MunitError naming the first
    missing, unexpected and wrong-shape tensors (reference names)."""
    kept = {k: v for k, v in sd.items() if k.rsplit(".", 1)[-1] not in DROPPED_BUFFERS}
    want = {reference_key(k, gen): (k, v.shape) for k, v in Generator(gen).state_dict().items()}
    missing = [k for k in want if k not in kept]
    unexpected = [k for k in kept if k not in want]
    wrong = [f"{k} {tuple(kept[k].shape)} (expected {tuple(shape)})" for k, (_, shape) in want.items()
             if k in kept and tuple(kept[k].shape) != tuple(shape)]
    if missing or unexpected or wrong:
        bits = []
        for label, names in (("wrong shape", wrong), ("missing", missing), ("unexpected", unexpected)):
            if names:
                bits.append(f"{label} " + ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else ""))
        raise MunitError(f"{what} does not match the architecture in the config: {'; '.join(bits)}")
    return {ours: kept[ref] for ref, (ours, _) in want.items()}, len(sd) - len(kept)


# --- files ------------------------------------------------------------------------------------

def load_reference_checkpoint(path: Path) -> dict[str, dict[str, Tensor]]:
    """Load a reference `gen_*.pt` ({'a': state_dict, 'b': state_dict}) without unpickling
    anything but tensors and containers."""
    if not path.is_file():
        raise MunitError(f"reference checkpoint {str(path)!r} does not exist: pass the gen_XXXXXXXX.pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise MunitError(f"{str(path)!r} is not a PyTorch checkpoint ({str(e).splitlines()[0]})")
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({m.group(1)})" if m else ""
        raise MunitError(f"{str(path)!r} contains pickled Python objects{what} that need arbitrary unpickling, "
                         "which could run code: refused for safety; re-save it with only tensors")
    except Exception as e:  # torch raises many types for foreign files
        raise MunitError(f"{str(path)!r} is not a PyTorch checkpoint ({type(e).__name__}: {e})")
    if not isinstance(ckpt, dict) or not {"a", "b"} <= set(ckpt):
        keys = ", ".join(map(str, list(ckpt)[:4])) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise MunitError(f"{str(path)!r} is not a reference generator checkpoint (expected keys 'a' and 'b', "
                         f"found {keys}): pass the gen_XXXXXXXX.pt file")
    for d in "ab":
        sd = ckpt[d]
        if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
            raise MunitError(f"{str(path)!r}: entry {d!r} is not a state dict of tensors")
        if not any(k.startswith("enc_content.") for k in sd):
            raise MunitError(f"{str(path)!r} holds no generator weights (no enc_content.*): "
                             "pass the gen_*.pt file, not dis_*.pt or optimizer.pt")
    return ckpt


def read_reference_config(path: Path) -> tuple[ModelConfig, list[str]]:
    """The reference YAML -> our ModelConfig (gen section, dis section, new_size).

    Every gen field must be present and supported (else MunitError naming it); dis fields we
    cannot represent fall back to our defaults, listed in the returned notes."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MunitError(f"config {str(path)!r} does not exist: pass the reference YAML used for training")
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise MunitError(f"config {str(path)!r} is not valid YAML ({str(e).splitlines()[0]})")
    if not isinstance(data, dict) or not isinstance(data.get("gen"), dict):
        raise MunitError(f"config {str(path)!r} has no gen: section: pass the reference YAML used for training")
    gen = data["gen"]
    for key in gen:
        if key not in GEN_FIELDS:
            raise MunitError(f"config {str(path)!r}: gen.{key} = {gen[key]!r} is not supported by munit "
                             f"(it understands {', '.join(GEN_FIELDS)})")
    for key in REQUIRED_GEN_FIELDS:
        if key not in gen:
            raise MunitError(f"config {str(path)!r}: gen.{key} is missing")
    if "new_size" not in data:
        raise MunitError(f"config {str(path)!r}: new_size is missing (the image size the model was trained at)")
    notes: list[str] = []
    try:
        gen_cfg = from_dict(GenConfig, gen, prefix="gen.")
        gen_cfg.validate()
        dis_cfg = DisConfig()
        for key, value in (data.get("dis") or {}).items():
            if not hasattr(dis_cfg, key):
                notes.append(f"dis.{key} is not used by munit: ignored")
                continue
            try:
                trial = from_dict(DisConfig, {key: value}, prefix="dis.", base=dis_cfg)
                trial.validate()
                dis_cfg = trial
            except MunitError:
                notes.append(f"dis.{key} = {value!r} is not supported: the default {getattr(dis_cfg, key)!r} "
                             "is recorded instead (it matters only for training, not for translation)")
        cfg = from_dict(ModelConfig, {"image_size": data["new_size"]}, base=ModelConfig(gen_cfg, dis_cfg))
        cfg.validate()
    except MunitError as e:
        raise MunitError(f"config {str(path)!r}: {e}")
    return cfg, notes


def parse_names(text: str) -> tuple[str, str]:
    """'dog,cat' -> ('dog', 'cat')."""
    names = tuple(n.strip() for n in text.split(","))
    if len(names) != 2 or not all(names) or names[0] == names[1]:
        raise MunitError(f"--names {text!r} must be two different domain names separated by a comma, e.g. dog,cat",
                         exit_code=2)
    return names  # type: ignore[return-value]


def step_from_name(path: Path) -> int:
    """The reference names generator files gen_<iterations, 8 digits>.pt."""
    m = re.fullmatch(r"gen_(\d+)\.pt", path.name)
    return int(m.group(1)) if m else 0


@dataclass
class ImportResult:
    path: Path
    model: ModelConfig
    domains: tuple[str, str]
    step: int
    params: int
    bytes: int
    dropped: int  # unused buffers left out
    notes: list[str] = field(default_factory=list)


def import_official(gen_pt: Path, config: Path, out: Path, names: tuple[str, str] = ("a", "b"),
                    overwrite: bool = False) -> ImportResult:
    """Convert a reference generator checkpoint into a munit generator checkpoint at `out`."""
    refuse_overwrite(out, overwrite)
    cfg, notes = read_reference_config(config)
    ckpt = load_reference_checkpoint(gen_pt)
    gens: dict[str, Generator] = {}
    dropped = 0
    for d in "ab":
        tensors, n = from_reference(ckpt[d], cfg.gen, f"generator {d!r} of {str(gen_pt)!r}")
        dropped += n
        gens[d] = build_generator(cfg, init=False)
        load_module(gens[d], {f"gen_{d}.{k}": v for k, v in tensors.items()}, f"gen_{d}", gen_pt)
    step = step_from_name(gen_pt)
    save_generators(out, cfg, gens, names, step, imported_from=f"reference checkpoint {gen_pt.name}",
                    reference_config=config.name, ema="false")
    return ImportResult(out, cfg, names, step, sum(count_params(g) for g in gens.values()), file_size(out),
                        dropped, notes)
