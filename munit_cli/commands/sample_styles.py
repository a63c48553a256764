"""`munit sample-styles`: reusable style banks (random, from references, interpolated) and previews."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer

from munit_cli.checkpoint import load_generators
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS, discover_images, save_image
from munit_cli.inference import Translator, interpolate_styles, load_input, preview_grid, reference_bank, save_style_bank
from munit_cli.models import random_styles
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import friendly, print_json, warn, pick_precision
from munit_cli.weights import resolve_model

DEFAULT_N = 8


def _refuse_existing(path: Path | None, overwrite: bool) -> None:
    if path is not None and path.exists() and not overwrite:
        raise MunitError(f"{str(path)!r} already exists: pass --overwrite to replace it", exit_code=1)


@friendly
def sample_styles(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint .safetensors, run directory, or model name (default: the shipped model)."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Domain the styles are for (name, or a / b) (default: b)."),
    num: Optional[int] = typer.Option(None, "--num-styles", "-n", help=f"Random codes to draw (default: {DEFAULT_N})."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random codes (drawn on the CPU)."),
    truncation: float = typer.Option(1.0, "--truncation", help="Scale random codes toward 0."),
    refs: Optional[list[str]] = typer.Option(None, "--from", help="Encode these reference images (files, folders, globs) instead; repeat for several."),
    interpolate: bool = typer.Option(False, "--interpolate", help="Codes along the line between two sources (two --from images, or two random codes)."),
    steps: int = typer.Option(8, "--steps", help="Codes written by --interpolate, both ends included."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the codes to this .safetensors styles file."),
    preview: Optional[list[str]] = typer.Option(None, "--preview", help="Images of the other domain to render with the codes; repeat for several."),
    grid_out: Optional[Path] = typer.Option(None, "--grid-out", help="Preview contact sheet: inputs (rows) x styles (columns)."),
    size: Optional[int] = typer.Option(None, "--size", help="Resize references / previews' shorter side (default: the model's image size)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing --out / --grid-out files."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object describing what was written."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP + "."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw weights even if the checkpoint has EMA weights."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, help="Refuse larger images (decompression-bomb guard; 0: no limit)."),
) -> None:
    """Sample style codes into a reusable styles file, and preview them.

    Examples:

      munit sample-styles --domain cat -n 16 --seed 7 --out cats.safetensors

      munit sample-styles --from tabby.jpg --from siamese.jpg --interpolate --steps 8 --out morph.safetensors \\
          --preview dog.jpg --grid-out morph.png

      munit translate photos/ --style-file cats.safetensors
    """
    if out is None and grid_out is None:
        raise MunitError("nothing to write: pass --out FILE.safetensors and/or --preview IMG --grid-out FILE.png", exit_code=2)
    if out is not None and out.suffix != ".safetensors":
        raise MunitError(f"--out {str(out)!r} must end in .safetensors", exit_code=2)
    if bool(preview) != (grid_out is not None):
        raise MunitError("--preview IMG and --grid-out FILE.png go together: pass both", exit_code=2)
    if num is not None and num < 1:
        raise MunitError(f"--num-styles must be >= 1, got {num}", exit_code=2)
    if refs and (num is not None or truncation != 1.0):
        warn("-n/--num-styles and --truncation ignored: codes come from the --from references")
    if interpolate and num not in (None, 2) and not refs:
        warn("-n ignored with --interpolate: it draws the two end codes from --seed")
    _refuse_existing(out, overwrite)
    _refuse_existing(grid_out, overwrite)
    dev = resolve_device(device)
    precision = pick_precision(precision, dev)
    model_path = resolve_model(model)
    bundle = load_generators(model_path, prefer_ema=not no_ema)
    info = bundle.info
    d = info.domain_key(domain or "b")
    name = info.domains["ab".index(d)]
    size = size or info.image_size
    tr = Translator(bundle, "b" if d == "a" else "a", d, dev, precision, style_encoder=bool(refs)) if (refs or preview) else None
    style_dim = info.model.gen.style_dim

    if refs:
        ref_paths = discover_images(refs)
        if interpolate and len(ref_paths) != 2:
            raise MunitError(f"--interpolate needs exactly two --from images, got {len(ref_paths)}", exit_code=2)
        codes = reference_bank(tr, ref_paths, size, max_pixels).codes
        source = ("interpolate:" if interpolate else "references:") + ",".join(str(p) for p in ref_paths)
    else:
        codes = random_styles(2 if interpolate else (num or DEFAULT_N), style_dim, seed, truncation)
        source = "interpolate:random" if interpolate else "random"
    if interpolate:
        codes = interpolate_styles(codes[0], codes[1], steps)  # (steps, style_dim, 1, 1)
    seed_used = None if refs else seed

    result = {"domain": name, "n": codes.shape[0], "style_dim": style_dim, "source": source, "seed": seed_used,
              "out": None, "grid": None}
    if out is not None:
        extra = {} if refs else {"truncation": str(truncation)}
        save_style_bank(out, codes, name, source, seed_used, domain_a=info.domains[0], domain_b=info.domains[1],
                        model=model_path.name, **extra)
        result["out"] = str(out)
    if preview:
        images = [load_input(p, size, max_pixels) for p in discover_images(preview)]
        save_image(preview_grid(tr, images, codes.to(torch.float32)), grid_out)
        result["grid"] = str(grid_out)
    if as_json:
        print_json(result)
    else:
        for key in ("out", "grid"):
            if result[key]:
                print(result[key])
