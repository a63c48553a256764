"""`munit translate`: many looks for every input image, from random, reference or saved styles."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import ProgressColumn, TextColumn
from rich.text import Text

from munit_cli.atomic import ensure_writable_dir
from munit_cli.checkpoint import GeneratorBundle, load_generators
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS, discover_images
from munit_cli.inference import (Event, Translator, load_style_bank, plan_jobs, random_bank, reference_bank,
                                 resolve_direction, translate_files)
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import err_console, friendly, progress, warn, pick_precision
from munit_cli.weights import resolve_model

EXTS = ("png", "jpg", "webp")
DEFAULT_NUM_STYLES = 8


class _Rate(ProgressColumn):
    """Images per second."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} img/s" if speed else "- img/s", style="progress.data.speed")


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def read_stdin_items(items: list[str]) -> list[str]:
    """Replace `-` by the paths read from stdin, one per line (blank lines ignored)."""
    out: list[str] = []
    for item in items:
        if item == "-":
            out += [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
        else:
            out.append(item)
    if not out:
        raise MunitError("no inputs: pass image files, folders or glob patterns (or - and paths on stdin)", exit_code=2)
    return out


def make_bank(tr: Translator, bundle: GeneratorBundle, style: str, num_styles: int | None, seed: int, per_image: bool,
              truncation: float, style_from: list[str], mean_style: bool, style_file: Path | None,
              size: int | None, max_pixels: int):
    """The StyleBank chosen by --style / --style-from / --style-file, warning about ignored options."""
    if style != "random":
        raise MunitError(f"unknown --style {style!r}: it only accepts 'random'; use --style-from REF or --style-file FILE",
                         exit_code=2)
    if style_from and style_file:
        raise MunitError("--style-from and --style-file are alternatives: pass only one", exit_code=2)
    if style_from or style_file:
        ignored = [name for name, used in (("-n/--num-styles", num_styles is not None), ("--seed", seed != 0),
                                           ("--per-image", per_image), ("--truncation", truncation != 1.0)) if used]
        if ignored:
            warn(f"{', '.join(ignored)} ignored: styles come from {'--style-from' if style_from else '--style-file'}")
    if mean_style and not style_from:
        warn("--mean-style ignored: it applies to --style-from references")
    if style_from:
        return reference_bank(tr, discover_images(style_from), size, max_pixels, mean=mean_style)
    if style_file:
        bank = load_style_bank(style_file, tr.style_dim)
        target = bundle.info.domains["ab".index(tr.tgt)]
        if bank.domain and bank.domain not in (target, tr.tgt):
            warn(f"styles file {str(style_file)!r} was made for domain {bank.domain!r} but the target is {target!r}")
        return bank
    if truncation < 0:
        raise MunitError(f"--truncation must be >= 0, got {truncation}", exit_code=2)
    n = DEFAULT_NUM_STYLES if num_styles is None else num_styles
    return random_bank(n, tr.style_dim, seed, truncation, per_image)


@friendly
def translate(
    inputs: list[str] = typer.Argument(..., help="Image files, folders (recursive), glob patterns, or - to read paths from stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint .safetensors, run directory, or model name in weights/ (default: the shipped model)."),
    to: Optional[str] = typer.Option(None, "--to", help="Target domain name (e.g. cat)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="a2b | b2a (or e.g. dog2cat) (default: a2b)."),
    style: str = typer.Option("random", "--style", help="random: codes drawn from N(0, I) (see --style-from / --style-file for the others)."),
    num_styles: Optional[int] = typer.Option(None, "--num-styles", "-n", help=f"Random styles per input (default: {DEFAULT_NUM_STYLES})."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random style codes (drawn on the CPU: same codes on every device)."),
    per_image: bool = typer.Option(False, "--per-image", help="Fresh random codes per input (seeded from --seed and the input index)."),
    truncation: float = typer.Option(1.0, "--truncation", help="Scale random codes toward 0 (psi < 1: tamer looks)."),
    style_from: Optional[list[str]] = typer.Option(None, "--style-from", help="Reference image or folder whose style to use; repeat for several."),
    mean_style: bool = typer.Option(False, "--mean-style", help="Average the --style-from references into one style."),
    style_file: Optional[Path] = typer.Option(None, "--style-file", help="Style codes saved by `munit sample-styles`, used in order."),
    size: Optional[int] = typer.Option(None, "--size", help="Resize the shorter side to this (default: the model's image size)."),
    keep_size: bool = typer.Option(False, "--keep-size", help="Process each image at its own size."),
    outdir: Path = typer.Option(Path("translated"), "--outdir", "-o", help="Output folder."),
    ext: str = typer.Option("png", "--ext", help="Output format: png | jpg | webp."),
    grid: bool = typer.Option(False, "--grid", help="Also write {stem}_grid: the input then its outputs."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip them, so a rerun resumes)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per written file on stdout, nothing else."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Styles decoded per forward pass (default: 8 at 256 px, fewer for larger images)."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP + "."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Background threads decoding inputs and writing outputs (default: min(4, CPUs))."),
    no_ema: bool = typer.Option(False, "--no-ema", help="Use the raw weights even if the checkpoint has EMA weights."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, help="Refuse larger images (decompression-bomb guard; 0: no limit)."),
) -> None:
    """Translate images to the other domain with N styles each.

    Examples:

      munit translate dog.jpg --to cat -n 8 --grid

      munit translate photos/ --style-from ref_cat.jpg --outdir out/

      find photos -name '*.jpg' | munit translate - --json --seed 3
    """
    if ext.lower().lstrip(".") not in EXTS:
        raise MunitError(f"unsupported --ext {ext!r}: use {', '.join(EXTS)}", exit_code=2)
    ext = ext.lower().lstrip(".")
    for name, value in (("--num-styles", num_styles), ("--batch-size", batch_size), ("--size", size)):
        if value is not None and value < 1:
            raise MunitError(f"{name} must be >= 1, got {value}", exit_code=2)
    if workers is not None and workers < 0:
        raise MunitError(f"--workers must be >= 0, got {workers}", exit_code=2)
    if keep_size and size is not None:
        warn("--size ignored: --keep-size processes each image at its own size")
    dev = resolve_device(device)
    precision = pick_precision(precision, dev)
    items = read_stdin_items(inputs)
    jobs = plan_jobs(items, exclude=outdir)
    bundle = load_generators(resolve_model(model), prefer_ema=not no_ema)
    src, tgt = resolve_direction(bundle, to, direction)
    proc_size = None if keep_size else (size or bundle.info.image_size)
    tr = Translator(bundle, src, tgt, dev, precision, batch_size, style_encoder=bool(style_from))
    bank = make_bank(tr, bundle, style, num_styles, seed, per_image, truncation, style_from or [], mean_style,
                     style_file, proc_size, max_pixels)

    ensure_writable_dir(outdir, "--outdir ")
    stdout = sys.stdout  # captured before the live bar, which may redirect sys.stdout to its console
    written = 0

    with progress(TextColumn("{task.fields[outputs]} outputs"), _Rate()) as bar:
        task = bar.add_task("translating", total=len(jobs), outputs=0)

        def report(e: Event) -> None:
            nonlocal written
            if e.kind == "output":
                written += 1
                bar.update(task, outputs=written)
                if as_json:
                    stdout.write(json.dumps({"input": str(e.input), "output": str(e.output), "style_index": e.style_index,
                                             "style_source": e.style_source, "seed": e.seed, "direction": tr.direction}) + "\n")
                else:
                    stdout.write(f"{e.output}\n")
                stdout.flush()
            else:
                if e.kind == "failed" and len(jobs) > 1:  # a single input's reason is the error line
                    warn(e.message)
                bar.advance(task)

        summary = translate_files(tr, jobs, bank, outdir, ext=ext, grid=grid, overwrite=overwrite, size=proc_size,
                                  max_pixels=max_pixels, workers=default_workers() if workers is None else workers,
                                  report=report)
    if summary.skipped:
        err_console.print(f"skipped {summary.skipped} existing output(s) in {str(outdir)!r} (pass --overwrite to replace them)",
                          highlight=False)
    if summary.failed and summary.inputs == 1:
        raise MunitError(summary.failed[0][1])
    if summary.failed:
        raise MunitError(f"{len(summary.failed)} of {summary.inputs} input(s) failed and were skipped "
                         f"(see the warnings above); {summary.written} file(s) written")
