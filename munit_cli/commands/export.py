"""`munit export`: slim generator-only weights (safetensors) or ONNX graphs from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from munit_cli.errors import MunitError
from munit_cli.exporting import DTYPES, FORMATS, FRAMINGS, export_generators, export_onnx
from munit_cli.ui import friendly, print_json, warn


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


@friendly
def export(
    source: Path = typer.Argument(..., help="A training checkpoint, a run folder (uses checkpoints/latest.safetensors), "
                                            "a generator checkpoint or an installed model name."),
    out: Path = typer.Option(..., "--out", "-o", metavar="PATH", help="Output .safetensors file, or folder with --format onnx."),
    fmt: str = typer.Option("safetensors", "--format", metavar="FORMAT", help=f"{' | '.join(FORMATS)}"),
    raw_weights: bool = typer.Option(False, "--raw-weights", metavar="", help="Export the raw generators, not the "
                                     "EMA-averaged ones (used when the source has them)."),
    ema: bool = typer.Option(True, "--ema/--no-ema", hidden=True, help="Old names: --no-ema is --raw-weights."),
    dtype: str = typer.Option("float32", "--dtype", metavar="DTYPE", help=f"{' | '.join(DTYPES)} (safetensors only)."),
    direction: Optional[str] = typer.Option(None, "--direction", metavar="DIR", help="a2b | b2a | SRC2DST with domain names (e.g. dog2cat): "
                                                                      "keep only what this direction needs. Required for onnx."),
    framing: Optional[str] = typer.Option(None, "--framing", metavar="WHAT", help=f"Record what the model was trained on: {' | '.join(FRAMINGS)} (heads: `translate` crops the head of whole photos by default; default: the source's record)."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace an existing --out."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object instead of a line."),
) -> None:
    """Write deployable generator weights: no discriminators, no optimizer state.

    Examples:

      munit export runs/dog2cat --out dog2cat.safetensors --dtype float16

      munit export runs/heads --out heads.safetensors --framing heads

      munit export runs/dog2cat --out dog2cat-onnx --format onnx --direction dog2cat
    """
    ema = ema and not raw_weights
    if fmt not in FORMATS:
        raise MunitError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}", exit_code=2)
    if fmt == "onnx":
        if dtype != "float32":
            warn(f"--dtype {dtype} is ignored with --format onnx: the graphs are float32")
        if framing is not None:
            warn("--framing is ignored with --format onnx: ONNX graphs carry no munit metadata")
        result = export_onnx(source, out, direction, ema=ema, overwrite=overwrite)
    else:
        result = export_generators(source, out, ema=ema, dtype=dtype, direction=direction, overwrite=overwrite,
                                   framing=framing)
    for note in result.notes:
        warn(note)
    if as_json:
        print_json({"path": str(result.path), "format": result.format, "bytes": result.bytes, "parameters": result.params,
                    "ema": result.ema, "dtype": result.dtype, "direction": result.direction, "source": result.source,
                    "max_abs_diff_vs_pytorch": result.max_abs_diff})
        return
    what = [_size(result.bytes), f"{result.params:,} parameters", "EMA" if result.ema else "raw weights", result.dtype,
            result.direction or "both directions"]
    print(f"{result.path}  ({', '.join(what)})")
