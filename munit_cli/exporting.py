"""Deployable exports: generator-only safetensors (EMA by default, any dtype, one or both
directions) and ONNX graphs of one direction with a JSON manifest.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from munit_cli import __version__
from munit_cli.atomic import atomic_write_bytes, refuse_overwrite
from munit_cli.checkpoint import CheckpointInfo, GeneratorBundle, file_size, load_generators, parse_info, save_generators
from munit_cli.config import to_dict
from munit_cli.errors import MunitError
from munit_cli.inference import require_direction, resolve_direction
from munit_cli.layers import bake_spectral_norm
from munit_cli.models import Generator
from munit_cli.weights import resolve_model

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
FORMATS = ("safetensors", "onnx")
FRAMINGS = ("heads", "photos")  # what a model was trained on: head crops (translate --heads by default) | whole photos
ONNX_MANIFEST = "manifest.json"
ONNX_FILES = ("content_encoder.onnx", "style_encoder.onnx", "decoder.onnx")
ONNX_OPSET = 17
ONNX_INSTALL = 'pip install "munit-cli[onnx]"'


@dataclass
class ExportResult:
    path: Path
    format: str
    bytes: int
    params: int
    ema: bool  # whether the exported weights are the EMA average
    dtype: str
    direction: str | None  # "a2b" / "b2a", or None for both
    source: str
    notes: list[str] = field(default_factory=list)  # things the user should know (printed as warnings)
    max_abs_diff: float | None = None  # ONNX vs PyTorch on a check input


# --- sources ----------------------------------------------------------------------------------

def direction_parts(src: str, dst: str) -> dict[str, tuple[str, ...]]:
    """What translating src -> dst needs: Ec of the source, Es + MLP + decoder of the target."""
    return {src: ("enc_content",), dst: ("enc_style", "mlp", "dec")}


@dataclass
class Source:
    """An export's source, loaded: which weights, which direction, what to tell the user."""

    path: Path
    info: CheckpointInfo
    bundle: GeneratorBundle
    keys: tuple[str, str] | None  # (source, target) domain keys of a one-direction export
    parts: dict[str, tuple[str, ...]] | None  # submodules kept per domain, None for all
    label: str  # provenance recorded in the export, e.g. "latest.safetensors (training, step 300)"
    notes: list[str]

    @property
    def direction(self) -> str | None:
        return f"{self.keys[0]}2{self.keys[1]}" if self.keys else None


def load_source(source: Path, ema: bool, direction: str | None) -> Source:
    """Load the generators of a checkpoint, run folder or installed model name and check they
    hold `direction` (default: a direction-only export's own direction, else both)."""
    path = resolve_model(source)
    info = parse_info(path)
    if info.kind not in ("generator", "training"):
        raise MunitError(f"{str(path)!r} is a {info.kind} file: export needs a training or generator checkpoint")
    bundle = load_generators(path, prefer_ema=ema)
    direction = direction or info.meta.get("direction")
    keys = parts = None
    if direction:
        keys = resolve_direction(bundle, None, direction)
        require_direction(bundle, *keys, style_encoder=True)
        parts = direction_parts(*keys)
    elif "parts" in info.meta:
        parts = info.parts()  # never fill in submodules the source does not hold
    notes = []
    if ema and not bundle.ema and info.kind == "training":
        notes.append(f"{path.name} has no EMA weights: exporting the raw generators")
    if not ema and bundle.ema and not info.has_ema():
        notes.append(f"{path.name} holds only EMA weights (it is an EMA export): --raw-weights cannot recover them")
    arg = Path(source).expanduser()
    try:  # "run/checkpoints/latest.safetensors" for a run folder, else the file name
        name = str(path.relative_to(arg.parent)) if arg.is_dir() else path.name
    except ValueError:
        name = path.name
    return Source(path, info, bundle, keys, parts, f"{name} ({info.kind}, step {info.step})", notes)


# --- safetensors ------------------------------------------------------------------------------

def export_generators(source: Path, out: Path, ema: bool = True, dtype: str = "float32",
                      direction: str | None = None, overwrite: bool = False, framing: str | None = None) -> ExportResult:
    """Write a generator-kind checkpoint holding only what inference needs. `framing` records
    what the model was trained on ("heads": head crops, so translate --heads is its default;
    "photos"); None keeps the source's record, if any."""
    if dtype not in DTYPES:
        raise MunitError(f"unknown dtype {dtype!r}: use {', '.join(DTYPES)}", exit_code=2)
    if framing is not None and framing not in FRAMINGS:
        raise MunitError(f"unknown --framing {framing!r}: use {' or '.join(FRAMINGS)}", exit_code=2)
    refuse_overwrite(out, overwrite)
    src = load_source(source, ema, direction)
    extra = {"source": src.label, "ema": str(src.bundle.ema).lower(), "weights_dtype": dtype}
    if src.direction:
        extra["direction"] = src.direction
    framing = framing or src.info.meta.get("framing")
    if framing:
        extra["framing"] = framing
    info = src.info
    save_generators(out, info.model, src.bundle.gens, info.domains, info.step, DTYPES[dtype], parts=src.parts, **extra)
    params = sum(math.prod(shape) for shape in parse_info(out).shapes.values())
    return ExportResult(out, "safetensors", file_size(out), params, src.bundle.ema, dtype, src.direction, src.label,
                        src.notes)


# --- ONNX -------------------------------------------------------------------------------------

class _Decode(nn.Module):
    """(content, style) -> image with the MLP inside, so the graph takes raw style codes."""

    def __init__(self, gen: Generator):
        super().__init__()
        self.gen = gen

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        return self.gen.decode(content, style)


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise MunitError(f"ONNX export needs the optional ONNX packages: {ONNX_INSTALL}")
    return onnxruntime


def _export_graph(module: nn.Module, args: tuple[Tensor, ...], path: Path, inputs: dict[str, dict[int, str]],
                  outputs: dict[str, dict[int, str]]) -> None:
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: no onnxscript needed, dynamic axes as declared
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and constant-folding chatter
        torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={**inputs, **outputs}, opset_version=ONNX_OPSET, **kwargs)


def _check_onnx_out(out: Path, overwrite: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise MunitError(f"{str(out)!r} is a file: --format onnx writes a folder; choose another --out")
    if any(out.iterdir()):
        if not (out / ONNX_MANIFEST).is_file():
            raise MunitError(f"{str(out)!r} is a non-empty folder that is not a munit ONNX export: choose another --out")
        refuse_overwrite(out, overwrite)


def export_onnx(source: Path, out: Path, direction: str | None, ema: bool = True,
                overwrite: bool = False) -> ExportResult:
    """Write content_encoder.onnx, style_encoder.onnx, decoder.onnx and manifest.json for one
    direction into the folder `out`, then check them against PyTorch with onnxruntime."""
    ort = _require_onnx()
    _check_onnx_out(out, overwrite)
    src = load_source(source, ema, direction)
    if src.keys is None:
        raise MunitError("--format onnx exports one direction: add --direction a2b or b2a", exit_code=2)
    info, (s, t) = src.info, src.keys
    for gen in src.bundle.gens.values():
        bake_spectral_norm(gen)  # eval-mode spectral norm as plain weights: ONNX has no vdot
    enc_c, gen_t = src.bundle.gens[s].enc_content, src.bundle.gens[t]
    g = info.model.gen
    rng = torch.Generator().manual_seed(0)
    size = max(16, info.image_size // 4 * 4)
    x = torch.rand(1, 3, size, size, generator=rng) * 2 - 1  # (1, 3, H, W), traced
    x2 = torch.rand(2, 3, size + 8, size + 4, generator=rng) * 2 - 1  # (2, 3, H', W'), checked
    with torch.no_grad():
        c, c2 = enc_c(x), enc_c(x2)  # (B, C, H/4, W/4)
    s1, s2 = torch.randn(1, g.style_dim, 1, 1, generator=rng), torch.randn(2, g.style_dim, 1, 1, generator=rng)
    image = {0: "batch", 2: "height", 3: "width"}
    content = {0: "batch", 2: "content_height", 3: "content_width"}
    graphs = {  # file: (module, traced inputs, check inputs, input axes, output axes)
        "content_encoder.onnx": (enc_c, (x,), (x2,), {"image": image}, {"content": content}),
        "style_encoder.onnx": (gen_t.enc_style, (x,), (x2,), {"image": image}, {"style": {0: "batch"}}),
        "decoder.onnx": (_Decode(gen_t), (c, s1), (c2, s2), {"content": content, "style": {0: "batch"}},
                         {"image": image}),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".onnx-", dir=out))
    try:
        for name, (module, args, _, ins, outs) in graphs.items():
            _export_graph(module.eval(), args, tmp / name, ins, outs)
        diff = _verify(ort, tmp, graphs)
        for name in graphs:
            os.replace(tmp / name, out / name)
    except MunitError:
        raise
    except Exception as e:  # the exporter raises many types
        raise MunitError(f"ONNX export failed ({type(e).__name__}: {e})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    code = ["batch", enc_c.out_dim, "content_height", "content_width"]
    img = ["batch", 3, "height", "width"]
    style = ["batch", g.style_dim, 1, 1]
    manifest = {
        "format": "munit-onnx",
        "format_version": 1,
        "munit_version": __version__,
        "direction": src.direction,
        "source_domain": info.domains["ab".index(s)],
        "target_domain": info.domains["ab".index(t)],
        "domains": {"a": info.domains[0], "b": info.domains[1]},
        "style_dim": g.style_dim,
        "image_size": info.image_size,
        "size_multiple": 2 ** g.n_downsample,  # pad H, W to this; outputs are 2^n * floor(H / 2^n)
        "input_range": [-1, 1],
        "source": src.label,
        "step": info.step,
        "ema": src.bundle.ema,
        "opset": ONNX_OPSET,
        "model_config": to_dict(info.model),
        "files": {
            "content_encoder.onnx": {"inputs": {"image": img}, "outputs": {"content": code}},
            "style_encoder.onnx": {"inputs": {"image": img}, "outputs": {"style": style}},
            "decoder.onnx": {"inputs": {"content": code, "style": style}, "outputs": {"image": img}},
        },
        "max_abs_diff_vs_pytorch": diff,
    }
    atomic_write_bytes(out / ONNX_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    n_bytes = sum(file_size(out / n) for n in ONNX_FILES)
    params = sum(p.numel() for m in (enc_c, gen_t.enc_style, gen_t.mlp, gen_t.dec) for p in m.parameters())
    return ExportResult(out, "onnx", n_bytes, params, src.bundle.ema, "float32", src.direction, src.label, src.notes,
                        diff)


def _verify(ort, folder: Path, graphs: dict) -> float:
    """Run every graph in onnxruntime at a batch and size other than the traced ones and
    return the largest difference from PyTorch; a large one means a broken export."""
    worst = 0.0
    for name, (module, _, args, ins, _) in graphs.items():
        sess = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        got = sess.run(None, {k: a.numpy() for k, a in zip(ins, args)})[0]
        with torch.no_grad():
            want = module(*args)
        worst = max(worst, float((torch.from_numpy(got) - want).abs().max()))
    if worst > 1e-3:
        raise MunitError(f"the exported ONNX graphs differ from PyTorch by {worst:.2g}: please report this as a bug")
    return worst
