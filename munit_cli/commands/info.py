"""`munit info`: render what a checkpoint, style bank, classifier or ONNX export holds
(the description is built by munit_cli/describe.py from headers and manifests only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from munit_cli.describe import PROVENANCE_KEYS, Description, describe
from munit_cli.errors import MunitError
from munit_cli.runtime import system_report
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


def _print_system(r: dict, as_json: bool) -> None:
    if as_json:
        print_json(r)
        return
    print(f"torch {r['torch']}, Python {r['python']}, {r['machine']}, {r['cpus']} CPUs, {r['threads']} torch threads; "
          f"CPU kernels {r['cpu_capability']}, bf16 {'native' if r['cpu_bf16_native'] else 'emulated'} on the CPU")
    for d in r["devices"]:
        default = "  (default --device auto)" if d["device"] == r["default_device"] else ""
        print(f"{d['device']}: {d['name']}{default}")
        print(f"  --precision auto -> {d['auto_precision']}: {d['reason']}")
        print(f"  native precisions: {', '.join(d['native_precisions'])}")


@friendly
def info(
    path: Optional[Path] = typer.Argument(None, metavar="PATH", help="A munit .safetensors file (training, generator, "
                                          "styles or classifier), a run folder or an ONNX export folder."),
    system: bool = typer.Option(False, "--system", metavar="", help="Describe this machine instead: devices, bf16 "
                                "support, and what --precision auto picks on each, and why."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object instead of a table."),
) -> None:
    """Show what a checkpoint, style bank, classifier or ONNX export holds and where it came
    from, without loading its tensors; or, with --system, what this machine offers.

    Examples: munit info runs/dog2cat/checkpoints/latest.safetensors --json

      munit info --system
    """
    if system:
        _print_system(system_report(), as_json)
        return
    if path is None:
        raise MunitError("pass a PATH to describe, or --system", exit_code=2)
    d = describe(path)
    if as_json:
        print_json(d.to_dict())
        return
    Console().print(_table(d), soft_wrap=True, markup=False)
