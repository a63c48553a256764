"""Self-describing safetensors checkpoints: header reading, atomic save, strict load.

One file holds tensors prefixed by network (`gen_a.`, `gen_b.`, `gen_a_ema.`, `dis_a.`,
`opt_gen.` ...) and string metadata (format version, kind, configs as JSON, domain names,
image size, step, package version). Nothing here unpickles anything.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn

from munit_cli import __version__
from munit_cli.atomic import atomic_write
from munit_cli.config import ModelConfig, TrainConfig, model_from_json, train_from_json
from munit_cli.errors import MunitError
from munit_cli.models import Generator, build_generator

FORMAT_VERSION = 1
KINDS = ("generator", "training", "styles")
GEN_PARTS = ("enc_content", "enc_style", "mlp", "dec")
MAX_HEADER = 100 * 1024 * 1024


# --- raw file access --------------------------------------------------------------------

def read_header(path: Path | str) -> tuple[dict[str, str], dict[str, dict]]:
    """Parse a safetensors header without reading tensor data.

    Returns (metadata, {name: {"dtype", "shape", "data_offsets"}}). Raises MunitError for a
    missing, non-safetensors, truncated or corrupt file."""
    path = Path(path)
    if not path.exists():
        raise MunitError(f"checkpoint {str(path)!r} does not exist: check the path")
    if path.is_dir():
        raise MunitError(f"{str(path)!r} is a folder, not a .safetensors file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise MunitError(f"{str(path)!r} is not a safetensors file (only {len(head)} bytes): pass a .safetensors checkpoint")
            (n,) = struct.unpack("<Q", head)
            if n < 2 or n > MAX_HEADER or n > size - 8:
                raise MunitError(f"{str(path)!r} is not a safetensors file (bad header length): pass a .safetensors checkpoint")
            raw = f.read(n)
    except OSError as e:
        raise MunitError(f"cannot read {str(path)!r} ({e.strerror or e}): check permissions")
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
    except (UnicodeDecodeError, ValueError) as e:
        raise MunitError(f"{str(path)!r} is not a safetensors file (unreadable header: {e}): pass a .safetensors checkpoint")
    meta = header.pop("__metadata__", None) or {}
    end = 0
    for name, info in header.items():
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise MunitError(f"{str(path)!r} is corrupt (bad entry for tensor {name!r}): re-create or re-download it")
    if end != size - 8 - n:
        raise MunitError(
            f"{str(path)!r} is truncated or corrupt ({size:,} bytes, header expects {8 + n + end:,}): "
            "use an earlier checkpoint or re-create it")
    return meta, header


def save_tensors(path: Path | str, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """Atomically write tensors (made contiguous, on CPU) and string metadata."""
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for k, v in tensors.items():
        v = v.detach().to("cpu").contiguous()
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v  # safetensors refuses shared storage
        seen.add(ptr)
    tensors = out
    data = save(tensors, metadata={k: str(v) for k, v in metadata.items()})
    atomic_write(path, lambda f: f.write(data))


def load_tensors(path: Path | str) -> dict[str, Tensor]:
    read_header(path)  # clear errors for missing / truncated files first
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types
        raise MunitError(f"cannot load tensors from {str(path)!r} ({e}): the file is corrupt; re-create it")


# --- metadata -----------------------------------------------------------------------------

@dataclass
class CheckpointInfo:
    """What a checkpoint's metadata says, validated."""

    path: Path
    kind: str
    model: ModelConfig | None
    train: TrainConfig | None
    domains: tuple[str, str]
    image_size: int
    step: int
    version: str
    meta: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)

    def parts(self) -> dict[str, tuple[str, ...]]:
        """Generator parts stored per domain (all four unless a direction-only export)."""
        if "parts" in self.meta:
            p = json.loads(self.meta["parts"])
            return {d: tuple(p.get(d, ())) for d in ("a", "b")}
        return all_parts()

    def has_ema(self) -> bool:
        """Whether the file stores EMA generators beside the raw ones (a training checkpoint)."""
        return any(k.startswith("gen_a_ema.") for k in self.shapes)

    def ema_weights(self, prefer_ema: bool = True) -> bool:
        """Whether loading with `prefer_ema` gives EMA-averaged weights: the stored EMA copies,
        or the only weights of an export made from them."""
        return (prefer_ema and self.has_ema()) or self.meta.get("ema") == "true"

    def domain_key(self, name: str) -> str:
        """'a' / 'b' for a domain name (or 'a'/'b' itself)."""
        if name in ("a", "b"):
            return name
        for key, dom in zip("ab", self.domains):
            if name == dom:
                return key
        raise MunitError(f"unknown domain {name!r}: this model's domains are {self.domains[0]!r} (a) and {self.domains[1]!r} (b)", exit_code=2)


def parse_info(path: Path | str) -> CheckpointInfo:
    """Read and validate a checkpoint's metadata (header only)."""
    path = Path(path)
    meta, header = read_header(path)
    if "format_version" not in meta or "kind" not in meta:
        raise MunitError(f"{str(path)!r} is a safetensors file but not a munit checkpoint (no munit metadata): "
                         "import foreign weights with `munit import-official`")
    try:
        version = int(meta["format_version"])
    except ValueError:
        raise MunitError(f"{str(path)!r} has a bad format_version {meta['format_version']!r}: "
                         "it is not a valid munit checkpoint; re-create or re-download it")
    if version > FORMAT_VERSION:
        raise MunitError(f"{str(path)!r} uses checkpoint format {version}, newer than this munit understands "
                         f"({FORMAT_VERSION}): upgrade munit")
    kind = meta["kind"]
    if kind in ("classifier", "detector"):  # munit files without a translation model (classifier.py, heads/)
        raise MunitError(f"{str(path)!r} is a {kind} file (written by `munit train-{kind}`), not a model, styles or "
                         "training checkpoint: pass a generator or training checkpoint")
    if kind not in KINDS:
        raise MunitError(f"{str(path)!r} has unknown kind {kind!r} (expected one of {', '.join(KINDS)}): "
                         "it was written by another tool or a newer munit; upgrade munit or re-create it")
    try:
        model = model_from_json(meta["model_config"]) if "model_config" in meta else None
        train = train_from_json(meta["train_config"]) if "train_config" in meta else None
        image_size = int(meta.get("image_size", model.image_size if model else 0))
        step = int(meta.get("step", 0))
    except (ValueError, json.JSONDecodeError) as e:
        raise MunitError(f"{str(path)!r} has corrupt metadata ({e}): re-create it")
    if kind in ("generator", "training") and model is None:
        raise MunitError(f"{str(path)!r} has no model_config metadata: it is not a valid munit {kind} checkpoint")
    shapes = {k: list(v.get("shape", [])) for k, v in header.items()}
    return CheckpointInfo(path, kind, model, train, (meta.get("domain_a", "a"), meta.get("domain_b", "b")),
                          image_size, step, meta.get("munit_version", "?"), meta, shapes)


def base_metadata(kind: str, model: ModelConfig, domains: tuple[str, str], step: int,
                  train: TrainConfig | None = None, **extra: str) -> dict[str, str]:
    from munit_cli.config import to_json

    meta = {
        "format_version": str(FORMAT_VERSION),
        "kind": kind,
        "model_config": to_json(model),
        "domain_a": domains[0],
        "domain_b": domains[1],
        "image_size": str(model.image_size),
        "step": str(step),
        "munit_version": __version__,
    }
    if train is not None:
        meta["train_config"] = to_json(train)
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


# --- modules <-> prefixed tensors ---------------------------------------------------------

def module_tensors(module: nn.Module, prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(module: nn.Module, tensors: dict[str, Tensor], prefix: str, path: Path | str,
                parts: tuple[str, ...] | None = None) -> None:
    """Strictly load `prefix.*` tensors into `module` (only its `parts` submodules when given).
    On any mismatch raise MunitError naming the first bad keys."""
    want = module.state_dict()
    if parts is not None:
        want = {k: v for k, v in want.items() if k.split(".")[0] in parts}
    have = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    wrong = [f"{k} {tuple(have[k].shape)} != {tuple(v.shape)}" for k, v in want.items()
             if k in have and have[k].shape != v.shape]
    if missing or unexpected or wrong:
        bits = []
        if missing:
            bits.append("missing " + ", ".join(f"{prefix}.{k}" for k in missing[:3]) + (" ..." if len(missing) > 3 else ""))
        if unexpected:
            bits.append("unexpected " + ", ".join(f"{prefix}.{k}" for k in unexpected[:3]) + (" ..." if len(unexpected) > 3 else ""))
        if wrong:
            bits.append("wrong shape " + ", ".join(f"{prefix}.{k}" for k in wrong[:3]))
        raise MunitError(f"checkpoint {str(path)!r} does not match its model config: {'; '.join(bits)}")
    with torch.no_grad():
        own = dict(module.state_dict(keep_vars=True))
        for k in want:
            own[k].copy_(have[k].to(own[k].dtype))


# --- generators -----------------------------------------------------------------------------

def all_parts() -> dict[str, tuple[str, ...]]:
    return {"a": GEN_PARTS, "b": GEN_PARTS}


@dataclass
class GeneratorBundle:
    """Generators loaded for inference. `gens[d]` may hold only `parts[d]` (direction export)."""

    info: CheckpointInfo
    gens: dict[str, Generator]
    ema: bool  # whether EMA weights were loaded
    dtype: torch.dtype  # dtype the weights were stored in
    parts: dict[str, tuple[str, ...]] = field(default_factory=all_parts)  # submodules loaded per domain


def load_generators(path: Path | str, prefer_ema: bool = True) -> GeneratorBundle:
    """Build both generators from a generator or training checkpoint and load them strictly.
    EMA weights are used when present and `prefer_ema`."""
    info = parse_info(path)
    if info.kind not in ("generator", "training"):
        raise MunitError(f"{str(path)!r} is a {info.kind} file, not a model: pass a generator or training checkpoint")
    tensors = load_tensors(path)
    use_ema = prefer_ema and info.has_ema()
    gens: dict[str, Generator] = {}
    dtype = torch.float32
    parts = info.parts()
    for d, held in parts.items():
        gen = build_generator(info.model, init=False)
        prefix = f"gen_{d}_ema" if use_ema else f"gen_{d}"
        load_module(gen, tensors, prefix, path, parts=held if held != GEN_PARTS else None)
        gens[d] = gen.eval()
        for k, v in tensors.items():
            if k.startswith(prefix + ".") and v.is_floating_point():
                dtype = v.dtype
                break
    return GeneratorBundle(info, gens, info.ema_weights(prefer_ema), dtype, parts)


def save_generators(path: Path | str, model: ModelConfig, gens: dict[str, nn.Module], domains: tuple[str, str],
                    step: int, dtype: torch.dtype = torch.float32, parts: dict[str, tuple[str, ...]] | None = None,
                    **extra: str) -> None:
    """Write a generator-kind checkpoint holding `gens` (keys 'a' and/or 'b'). With `parts`
    ({'a': ('enc_content',), ...}) keep only those submodules: a direction-only export."""
    tensors: dict[str, Tensor] = {}
    for d, gen in gens.items():
        tensors.update({k: v.to(dtype) if v.is_floating_point() else v for k, v in module_tensors(gen, f"gen_{d}").items()
                        if parts is None or k.split(".")[1] in parts.get(d, ())})
    if parts is not None:
        extra["parts"] = json.dumps({d: list(p) for d, p in parts.items()})
    save_tensors(path, tensors, base_metadata("generator", model, domains, step, **extra))


# --- optimizer state <-> flat tensors + JSON ----------------------------------------------

def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, Tensor], str]:
    """Optimizer state as `prefix.state.<param>.<name>` tensors plus a JSON string holding
    the param groups and any non-tensor state."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"{prefix}.state.{idx}.{name}"] = v
            else:
                scalars.setdefault(str(idx), {})[name] = v
    return tensors, json.dumps({"param_groups": sd["param_groups"], "scalars": scalars})


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], prefix: str, meta_json: str) -> None:
    meta = json.loads(meta_json)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith(prefix + ".state."):
            idx, name = k[len(prefix) + 7:].split(".", 1)
            state.setdefault(int(idx), {})[name] = v
    for idx, st in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def file_size(path: Path | str) -> int:
    return os.stat(path).st_size
