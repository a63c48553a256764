"""`munit info`: what a checkpoint, style bank or ONNX export holds and where it came from,
read from headers and manifests only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from munit_cli.checkpoint import GEN_PARTS, parse_info, read_header
from munit_cli.config import to_dict
from munit_cli.errors import MunitError
from munit_cli.export import ONNX_MANIFEST
from munit_cli.ui import friendly, print_json


def _param_counts(shapes: dict[str, list[int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, shape in shapes.items():
        net = name.split(".")[0]
        counts[net] = counts.get(net, 0) + math.prod(shape)
    return counts


NETWORKS = {"gen_a": "generator a", "gen_b": "generator b", "gen_a_ema": "EMA generator a",
            "gen_b_ema": "EMA generator b", "dis_a": "discriminator a", "dis_b": "discriminator b",
            "opt_gen": "generator optimizer state", "opt_dis": "discriminator optimizer state",
            "rng": "random-number-generator state", "styles": "style codes"}
PART_NAMES = {"enc_content": "content encoder", "enc_style": "style encoder", "mlp": "MLP", "dec": "decoder"}
DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64", "U8": "uint8",
               "I64": "int64", "I32": "int32", "BOOL": "bool"}
PROVENANCE_KEYS = ("source", "imported_from", "reference_config")


def _holds(info, dtypes: dict[str, set[str]]) -> list[str]:
    """One line per network in the file, e.g. 'generator a (dog): content encoder [float16]'."""
    parts = info.parts()
    lines = []
    nets = set(name.split(".")[0] for name in info.shapes)
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


def _provenance(info) -> str:
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


def describe(path: Path) -> dict:
    """A JSON-able description of a checkpoint file, a run folder or an ONNX export folder."""
    path = Path(path)
    if path.is_dir():
        if (path / ONNX_MANIFEST).is_file():
            return _describe_onnx(path)
        if (path / "checkpoints" / "latest.safetensors").is_file():
            path = path / "checkpoints" / "latest.safetensors"
        else:
            raise MunitError(f"{str(path)!r} is a folder but neither a run folder (no checkpoints/latest.safetensors) "
                             f"nor an ONNX export ({ONNX_MANIFEST} missing): pass a .safetensors file")
    info = parse_info(path)
    _, header = read_header(path)
    dtypes: dict[str, set[str]] = {}
    for name, entry in header.items():
        dtypes.setdefault(name.split(".")[0], set()).add(DTYPE_NAMES.get(entry.get("dtype"), str(entry.get("dtype"))))
    out = {
        "path": str(path),
        "kind": info.kind,
        "format_version": int(info.meta["format_version"]),
        "munit_version": info.version,
        "domains": {"a": info.domains[0], "b": info.domains[1]},
        "step": info.step,
        "image_size": info.image_size,
        "model_config": to_dict(info.model) if info.model else None,
        "train_config": to_dict(info.train) if info.train else None,
        "parameters": _param_counts(info.shapes),
        "has_ema": info.has_ema() or info.meta.get("ema") == "true",
        "holds": _holds(info, dtypes),
        "provenance": _provenance(info),
    }
    if info.kind == "styles":
        out["styles"] = info.shapes.get("styles")
    if "direction" in info.meta:
        out["direction"] = info.meta["direction"]
    skip = {"format_version", "kind", "model_config", "train_config", "domain_a", "domain_b",
            "image_size", "step", "munit_version"}
    out["extra"] = {k: v for k, v in info.meta.items() if k not in skip}
    return out


def _signature(tensors: dict[str, list]) -> str:
    return ", ".join(f"{name} ({', '.join(map(str, dims))})" for name, dims in tensors.items())


def _describe_onnx(folder: Path) -> dict:
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
    return {
        "path": str(folder),
        "kind": "onnx",
        "format_version": m.get("format_version"),
        "munit_version": m.get("munit_version", "?"),
        "domains": m.get("domains"),
        "direction": f"{m.get('direction')} ({m.get('source_domain')} -> {m.get('target_domain')})",
        "step": m.get("step", 0),
        "image_size": m.get("image_size"),
        "style_dim": m.get("style_dim"),
        "model_config": m.get("model_config"),
        "train_config": None,
        "parameters": {},
        "has_ema": bool(m.get("ema")),
        "holds": holds,
        "provenance": f"exported from {m.get('source', '?')}" + (" (EMA weights)" if m.get("ema") else " (raw weights)"),
        "extra": {"opset": str(m.get("opset")), "max_abs_diff_vs_pytorch": str(m.get("max_abs_diff_vs_pytorch"))},
    }


@friendly
def info(
    path: Path = typer.Argument(..., help="A munit .safetensors file (training, generator or styles), "
                                          "a run folder or an ONNX export folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Show what a checkpoint, style bank or ONNX export holds and where it came from,
    without loading its tensors.

    Example: munit info runs/dog2cat/checkpoints/latest.safetensors --json
    """
    d = describe(path)
    if as_json:
        print_json(d)
        return
    con = Console()
    t = Table(show_header=False, box=None)
    t.add_row("file", d["path"])
    t.add_row("kind", d["kind"])
    t.add_row("from", d["provenance"])
    for i, line in enumerate(d["holds"]):
        t.add_row("holds" if i == 0 else "", line)
    if d["kind"] != "styles":
        t.add_row("domains", f"a = {d['domains']['a']}, b = {d['domains']['b']}")
        if "direction" in d:
            t.add_row("direction", d["direction"])
        t.add_row("step", f"{d['step']:,}")
        t.add_row("image size", str(d["image_size"]))
        t.add_row("EMA weights", "yes" if d["has_ema"] else "no")
    for net, n in d["parameters"].items():
        t.add_row(f"params {net}", f"{n:,}")
    for k, v in d["extra"].items():
        if k not in PROVENANCE_KEYS + ("parts", "direction", "ema"):
            t.add_row(k, v)
    if d["model_config"]:
        t.add_row("model config", json.dumps(d["model_config"]))
    if d["train_config"]:
        t.add_row("train config", json.dumps(d["train_config"]))
    t.add_row("written by", f"munit {d['munit_version']} (format {d['format_version']})")
    con.print(t, soft_wrap=True, markup=False)
