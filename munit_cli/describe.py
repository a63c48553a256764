"""What a munit file holds and where it came from, read from headers and manifests only:
checkpoints, style banks, domain classifiers, run folders and ONNX export folders."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from munit_cli.checkpoint import GEN_PARTS, CheckpointInfo, parse_info, read_header
from munit_cli.config import to_dict
from munit_cli.errors import MunitError
from munit_cli.exporting import ONNX_MANIFEST

NETWORKS = {"gen_a": "generator a", "gen_b": "generator b", "gen_a_ema": "EMA generator a",
            "gen_b_ema": "EMA generator b", "dis_a": "discriminator a", "dis_b": "discriminator b",
            "opt_gen": "generator optimizer state", "opt_dis": "discriminator optimizer state",
            "rng": "random-number-generator state", "styles": "style codes",
            "clf": "domain classifier", "train_hashes": "hashes of the training images", "det": "head detector"}
PART_NAMES = {"enc_content": "content encoder", "enc_style": "style encoder", "mlp": "MLP", "dec": "decoder"}
DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "U8": "uint8",
               "I64": "int64", "I32": "int32", "BOOL": "bool"}
PROVENANCE_KEYS = ("source", "imported_from", "reference_config")  # metadata the `provenance` line already says
# munit files that hold no translation model, described from their metadata as it is:
# "classifier" is written by `munit train-classifier` (classifier.py), "detector" by
# `munit train-detector` (heads/detector.py)
OTHER_KINDS = ("classifier", "detector")
# metadata shown by dedicated fields, not repeated in `extra`
_SHOWN = {"format_version", "kind", "model_config", "train_config", "domain_a", "domain_b",
          "image_size", "step", "munit_version"}


@dataclass
class Description:
    """A JSON-able description of one file or folder (`to_dict()` is `munit info --json`)."""

    path: str
    kind: str  # generator | training | styles | onnx | classifier
    format_version: int | str | None
    munit_version: str
    domains: dict[str, str] | None  # {"a": name, "b": name}
    step: int
    image_size: int | None
    model_config: dict | None
    train_config: dict | None
    parameters: dict[str, int]  # network prefix -> parameter (element) count
    has_ema: bool
    holds: list[str]  # one line per network or file, e.g. "generator a (dog), float32"
    provenance: str  # one line: exported from / imported from / sampled from / written by ...
    extra: dict[str, str] = field(default_factory=dict)  # the remaining metadata
    styles: list[int] | None = None  # styles files: [N, style_dim]
    direction: str | None = None  # direction-only exports
    style_dim: int | None = None  # ONNX exports

    def to_dict(self) -> dict:
        """Every field; the optional ones (styles, direction, style_dim) only when set."""
        d = asdict(self)
        for key in ("styles", "direction", "style_dim"):
            if d[key] is None:
                del d[key]
        return d


def _param_counts(shapes: dict[str, list[int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, shape in shapes.items():
        net = name.split(".")[0]
        counts[net] = counts.get(net, 0) + math.prod(shape)
    return counts


def _dtypes(header: dict[str, dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, entry in header.items():
        out.setdefault(name.split(".")[0], set()).add(DTYPE_NAMES.get(entry.get("dtype"), str(entry.get("dtype"))))
    return out


def _holds(info: CheckpointInfo, dtypes: dict[str, set[str]]) -> list[str]:
    """One line per network in the file, e.g. 'generator a (dog): content encoder, float16'."""
    parts = info.parts()
    lines = []
    nets = set(dtypes)
    for net in [n for n in NETWORKS if n in nets] + sorted(nets - set(NETWORKS)):
        line = NETWORKS.get(net, net)
        if net.startswith("gen_"):
            d = net[4]
            line += f" ({info.domains['ab'.index(d)]})"
            if info.kind == "generator" and parts[d] != GEN_PARTS:
                line += ": " + ", ".join(PART_NAMES[p] for p in parts[d])
        if net == "styles":
            n, dim = (info.shapes["styles"] + [0, 0])[:2]
            line = f"{n} style codes of dimension {dim}" + (f" for {info.meta['domain']}" if "domain" in info.meta else "")
        lines.append(f"{line}, {'/'.join(sorted(dtypes[net]))}")
    return lines


def _provenance(info: CheckpointInfo) -> str:
    m = info.meta
    if "imported_from" in m:
        cfg = f" with config {m['reference_config']}" if "reference_config" in m else ""
        return f"imported from {m['imported_from']}{cfg}"
    if info.kind == "styles":
        seed = f", seed {m['seed']}" if m.get("seed") else ""
        return f"sampled from {m['source']}{seed}" if "source" in m else "written by munit sample-styles"
    if "source" in m:
        weights = {"true": " (EMA weights)", "false": " (raw weights)"}.get(m.get("ema", ""), "")
        return f"exported from {m['source']}{weights}"
    if info.kind == "training":
        return f"training checkpoint at step {info.step:,}"
    return f"written by munit {info.version}"


def describe(path: Path | str) -> Description:
    """Describe a checkpoint / styles / classifier file, a run folder or an ONNX export folder."""
    path = Path(path)
    if path.is_dir():
        if (path / ONNX_MANIFEST).is_file():
            return describe_onnx(path)
        if (path / "checkpoints" / "latest.safetensors").is_file():
            path = path / "checkpoints" / "latest.safetensors"
        else:
            raise MunitError(f"{str(path)!r} is a folder but neither a run folder (no checkpoints/latest.safetensors) "
                             f"nor an ONNX export ({ONNX_MANIFEST} missing): pass a .safetensors file")
    meta, header = read_header(path)
    if meta.get("kind") in OTHER_KINDS and "format_version" in meta:
        return _describe_other(path, meta, header)
    info = parse_info(path)
    return Description(
        path=str(path), kind=info.kind, format_version=int(info.meta["format_version"]), munit_version=info.version,
        domains={"a": info.domains[0], "b": info.domains[1]}, step=info.step, image_size=info.image_size,
        model_config=to_dict(info.model) if info.model else None,
        train_config=to_dict(info.train) if info.train else None,
        parameters=_param_counts(info.shapes), has_ema=info.ema_weights(),
        holds=_holds(info, _dtypes(header)), provenance=_provenance(info),
        extra={k: v for k, v in info.meta.items() if k not in _SHOWN},
        styles=info.shapes.get("styles") if info.kind == "styles" else None, direction=info.meta.get("direction"))


def _describe_other(path: Path, meta: dict[str, str], header: dict[str, dict]) -> Description:
    """A munit file of a kind without a translation model (e.g. a classifier): its metadata as is."""
    version = meta["format_version"]
    dtypes = _dtypes(header)
    nets = [n for n in NETWORKS if n in dtypes] + sorted(set(dtypes) - set(NETWORKS))
    domains = {"a": meta["domain_a"], "b": meta["domain_b"]} if "domain_a" in meta and "domain_b" in meta else None
    return Description(
        path=str(path), kind=meta["kind"], format_version=int(version) if version.isdigit() else version,
        munit_version=meta.get("munit_version", "?"), domains=domains,
        step=int(meta["step"]) if meta.get("step", "").isdigit() else 0,
        image_size=int(meta["image_size"]) if meta.get("image_size", "").isdigit() else None,
        model_config=None, train_config=None, parameters=_param_counts({k: v.get("shape", []) for k, v in header.items()}),
        has_ema=False, holds=[f"{NETWORKS.get(n, n)}, {'/'.join(sorted(dtypes[n]))}" for n in nets],
        provenance=f"written by munit {meta.get('munit_version', '?')}",
        extra={k: v for k, v in meta.items() if k not in _SHOWN})


def _signature(tensors: dict[str, list]) -> str:
    return ", ".join(f"{name} ({', '.join(map(str, dims))})" for name, dims in tensors.items())


def describe_onnx(folder: Path) -> Description:
    """An ONNX export folder, from its manifest (the .onnx files are only checked to exist)."""
    try:
        m = json.loads((folder / ONNX_MANIFEST).read_text())
        if m.get("format") != "munit-onnx":
            raise ValueError("not a munit ONNX manifest")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise MunitError(f"{str(folder / ONNX_MANIFEST)!r} is unreadable ({e}): re-export the ONNX folder")
    missing = [f for f in m.get("files", {}) if not (folder / f).is_file()]
    if missing:
        raise MunitError(f"ONNX export {str(folder)!r} is incomplete (missing {', '.join(missing)}): re-export it")
    holds = [f"{name}: {_signature(io['inputs'])} -> {_signature(io['outputs'])} "
             f"({(folder / name).stat().st_size:,} bytes)" for name, io in m.get("files", {}).items()]
    return Description(
        path=str(folder), kind="onnx", format_version=m.get("format_version"), munit_version=m.get("munit_version", "?"),
        domains=m.get("domains"), step=m.get("step", 0), image_size=m.get("image_size"),
        model_config=m.get("model_config"), train_config=None, parameters={}, has_ema=bool(m.get("ema")),
        holds=holds,
        provenance=f"exported from {m.get('source', '?')}" + (" (EMA weights)" if m.get("ema") else " (raw weights)"),
        extra={"opset": str(m.get("opset")), "max_abs_diff_vs_pytorch": str(m.get("max_abs_diff_vs_pytorch"))},
        direction=f"{m.get('direction')} ({m.get('source_domain')} -> {m.get('target_domain')})",
        style_dim=m.get("style_dim"))
