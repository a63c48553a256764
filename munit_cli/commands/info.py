"""`munit info`: what a checkpoint (or style bank) holds, from its header only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from munit_cli.checkpoint import parse_info
from munit_cli.config import to_dict
from munit_cli.ui import friendly, print_json


def _param_counts(shapes: dict[str, list[int]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, shape in shapes.items():
        net = name.split(".")[0]
        counts[net] = counts.get(net, 0) + math.prod(shape)
    return counts


def describe(path: Path) -> dict:
    """A JSON-able description of a checkpoint file."""
    info = parse_info(path)
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
        "has_ema": info.has_ema(),
    }
    if info.kind == "styles":
        out["styles"] = info.shapes.get("styles")
    skip = {"format_version", "kind", "model_config", "train_config", "domain_a", "domain_b",
            "image_size", "step", "munit_version"}
    out["extra"] = {k: v for k, v in info.meta.items() if k not in skip}
    return out


@friendly
def info(
    path: Path = typer.Argument(..., help="A munit .safetensors file (training, generator or styles)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Show a checkpoint's metadata without loading its tensors.

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
    t.add_row("domains", f"a = {d['domains']['a']}, b = {d['domains']['b']}")
    t.add_row("step", f"{d['step']:,}")
    t.add_row("image size", str(d["image_size"]))
    t.add_row("EMA weights", "yes" if d["has_ema"] else "no")
    for net, n in d["parameters"].items():
        t.add_row(f"params {net}", f"{n:,}")
    for k, v in d["extra"].items():
        t.add_row(k, v)
    if d["model_config"]:
        t.add_row("model config", json.dumps(d["model_config"]))
    if d["train_config"]:
        t.add_row("train config", json.dumps(d["train_config"]))
    t.add_row("written by", f"munit {d['munit_version']} (format {d['format_version']})")
    con.print(t, soft_wrap=True)
