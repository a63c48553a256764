"""`munit sample-styles`: reusable style banks (random, from references, interpolated) and previews."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer

from munit_cli.checkpoint import load_generators
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS, discover_images, save_image
from munit_cli.inference import Translator, load_input, preview_grid, sample_codes
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import friendly, print_json, warn, pick_precision
from munit_cli.styles import DEFAULT_NUM_STYLES, StyleOptions, save_style_bank
from munit_cli.weights import resolve_model


def _refuse_existing(path: Path | None, overwrite: bool) -> None:
    if path is not None and path.exists() and not overwrite:
        raise MunitError(f"{str(path)!r} already exists: pass --overwrite to replace it", exit_code=1)


def _check_outputs(out: Path | None, preview: list[str] | None, grid_out: Path | None, overwrite: bool) -> None:
    """Refuse nothing to write, a wrong suffix, half a preview (exit 2) and existing files (exit 1)."""
    if out is None and grid_out is None:
        raise MunitError("nothing to write: pass --out FILE.safetensors and/or --preview IMG --grid-out FILE.png", exit_code=2)
    if out is not None and out.suffix != ".safetensors":
        raise MunitError(f"--out {str(out)!r} must end in .safetensors", exit_code=2)
    if bool(preview) != (grid_out is not None):
        raise MunitError("--preview IMG and --grid-out FILE.png go together: pass both", exit_code=2)
    _refuse_existing(out, overwrite)
    _refuse_existing(grid_out, overwrite)


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    for key in ("out", "grid"):
        if result[key]:
            print(result[key])


@friendly
def sample_styles(
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="MODEL", help="Checkpoint .safetensors, run directory, or model name (default: the shipped model)."),
    domain: Optional[str] = typer.Option(None, "--domain", metavar="DOMAIN", help="Domain the styles are for (name, or a / b) (default: b)."),
    num: Optional[int] = typer.Option(None, "--num-styles", "-n", metavar="N", help=f"Random codes to draw (default: {DEFAULT_NUM_STYLES})."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of the random codes (drawn on the CPU)."),
    truncation: float = typer.Option(1.0, "--truncation", metavar="PSI", help="Scale random codes toward 0."),
    refs: Optional[list[str]] = typer.Option(None, "--from", metavar="REF", help="Encode these reference images (files, folders, globs) instead; repeat for several."),
    interpolate: bool = typer.Option(False, "--interpolate", metavar="", help="Codes along the line between two sources (two --from images, or two random codes)."),
    steps: int = typer.Option(8, "--steps", metavar="N", help="Codes written by --interpolate, both ends included."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="FILE", help="Write the codes to this .safetensors styles file."),
    preview: Optional[list[str]] = typer.Option(None, "--preview", metavar="IMG", help="Images of the other domain to render with the codes; repeat for several."),
    grid_out: Optional[Path] = typer.Option(None, "--grid-out", metavar="FILE", help="Preview contact sheet: inputs (rows) x styles (columns)."),
    size: Optional[int] = typer.Option(None, "--size", metavar="PX", help="Resize references / previews' shorter side (default: the model's image size)."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace existing --out / --grid-out files."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object describing what was written."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", metavar="NAME", help=PRECISION_HELP + "."),
    raw_weights: bool = typer.Option(False, "--raw-weights", metavar="", help="Use the raw weights even if the checkpoint has EMA weights."),
    no_ema: bool = typer.Option(False, "--no-ema", hidden=True, help="Old name of --raw-weights."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, metavar="N", help="Refuse larger images (decompression-bomb guard; 0: no limit)."),
) -> None:
    """Sample style codes into a reusable styles file, and preview them.

    Examples:

      munit sample-styles --domain cat -n 16 --seed 7 --out cats.safetensors

      munit sample-styles --from tabby.jpg --from siamese.jpg --interpolate --steps 8 --out morph.safetensors \\
          --preview dog.jpg --grid-out morph.png

      munit translate photos/ --style-file cats.safetensors
    """
    _check_outputs(out, preview, grid_out, overwrite)
    styles = StyleOptions(num_styles=num, seed=seed, truncation=truncation, refs=tuple(refs or ()), refs_flag="--from",
                          interpolate=interpolate)
    for line in styles.check():
        warn(line)
    dev = resolve_device(device)
    precision = pick_precision(precision, dev)
    model_path = resolve_model(model)
    bundle = load_generators(model_path, prefer_ema=not (raw_weights or no_ema))
    info = bundle.info
    d = info.domain_key(domain or "b")
    name = info.domains["ab".index(d)]
    size = size or info.image_size
    tr = Translator(bundle, "b" if d == "a" else "a", d, dev, precision, style_encoder=bool(refs)) if (refs or preview) else None
    codes, source, seed_used = sample_codes(tr, styles, info.model.gen.style_dim, steps=steps, size=size,
                                            max_pixels=max_pixels)
    result = {"domain": name, "n": codes.shape[0], "style_dim": info.model.gen.style_dim, "source": source,
              "seed": seed_used, "out": None, "grid": None}
    if out is not None:
        extra = {} if refs else {"truncation": str(truncation)}
        save_style_bank(out, codes, name, source, seed_used, domain_a=info.domains[0], domain_b=info.domains[1],
                        model=model_path.name, **extra)
        result["out"] = str(out)
    if preview:
        images = [load_input(p, size, max_pixels) for p in discover_images(preview)]
        save_image(preview_grid(tr, images, codes.to(torch.float32)), grid_out)
        result["grid"] = str(grid_out)
    _print_result(result, as_json)
