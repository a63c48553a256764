"""`munit info`: render what a checkpoint, style bank, classifier or ONNX export holds
(the description is built by munit_cli/describe.py from headers and manifests only)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from munit_cli.describe import PROVENANCE_KEYS, Description, describe
from munit_cli.ui import friendly, print_json

MODEL_KINDS = ("generator", "training", "onnx")  # kinds whose domains / step / size rows are shown
MAX_VALUE = 300  # characters of a metadata value shown in the table (--json shows all)


def _short(value: str) -> str:
    return value if len(value) <= MAX_VALUE else f"{value[:MAX_VALUE]}... ({len(value):,} characters, --json shows all)"


def _table(d: Description) -> Table:
    t = Table(show_header=False, box=None)
    t.add_row("file", d.path)
    t.add_row("kind", d.kind)
    t.add_row("from", d.provenance)
    for i, line in enumerate(d.holds):
        t.add_row("holds" if i == 0 else "", line)
    if d.kind in MODEL_KINDS:
        t.add_row("domains", f"a = {d.domains['a']}, b = {d.domains['b']}")
        if d.direction is not None:
            t.add_row("direction", d.direction)
        t.add_row("step", f"{d.step:,}")
        t.add_row("image size", str(d.image_size))
        t.add_row("EMA weights", "yes" if d.has_ema else "no")
    elif d.kind != "styles" and d.domains:
        t.add_row("domains", f"a = {d.domains['a']}, b = {d.domains['b']}")
    for net, n in d.parameters.items():
        t.add_row(f"params {net}", f"{n:,}")
    for k, v in d.extra.items():
        if k not in PROVENANCE_KEYS + ("parts", "direction", "ema"):
            t.add_row(k, _short(v))
    if d.model_config:
        t.add_row("model config", json.dumps(d.model_config))
    if d.train_config:
        t.add_row("train config", json.dumps(d.train_config))
    t.add_row("written by", f"munit {d.munit_version} (format {d.format_version})")
    return t


@friendly
def info(
    path: Path = typer.Argument(..., metavar="PATH", help="A munit .safetensors file (training, generator, styles "
                                                          "or classifier), a run folder or an ONNX export folder."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object instead of a table."),
) -> None:
    """Show what a checkpoint, style bank, classifier or ONNX export holds and where it came
    from, without loading its tensors.

    Example: munit info runs/dog2cat/checkpoints/latest.safetensors --json
    """
    d = describe(path)
    if as_json:
        print_json(d.to_dict())
        return
    Console().print(_table(d), soft_wrap=True, markup=False)
