"""`munit import-official`: convert a generator checkpoint of the authors' reference code."""

from __future__ import annotations

from pathlib import Path

import typer

from munit_cli.official import import_official as convert
from munit_cli.official import parse_names
from munit_cli.ui import friendly, print_json, warn


@friendly
def import_official(
    gen_pt: Path = typer.Argument(..., help="The reference generator checkpoint, gen_XXXXXXXX.pt."),
    config: Path = typer.Option(..., "--config", "-c", metavar="FILE", help="The reference YAML config it was trained with."),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE", help="Output .safetensors generator checkpoint."),
    names: str = typer.Option("a,b", "--names", metavar="A,B", help="Names of domains a and b, e.g. dog,cat."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace an existing --out."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object instead of a line."),
) -> None:
    """Convert a generator checkpoint of the reference implementation (NVlabs/MUNIT).

    The file is loaded with torch.load(weights_only=True): nothing but tensors is unpickled.
    Architecture and image size come from the YAML's gen: section and new_size.

    Example: munit import-official outputs/edges2shoes/checkpoints/gen_01000000.pt
    --config configs/edges2shoes_folder.yaml --names edges,shoes --out edges2shoes.safetensors
    """
    result = convert(gen_pt, config, out, parse_names(names), overwrite=overwrite)
    for note in result.notes:
        warn(note)
    if as_json:
        print_json({"path": str(result.path), "bytes": result.bytes, "parameters": result.params, "step": result.step,
                    "domains": {"a": result.domains[0], "b": result.domains[1]},
                    "image_size": result.model.image_size, "dropped_buffers": result.dropped})
        return
    print(f"{result.path}  ({result.params:,} parameters, step {result.step:,}, "
          f"a = {result.domains[0]}, b = {result.domains[1]}, {result.model.image_size} px)")
