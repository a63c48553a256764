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
from munit_cli.checkpoint import load_generators
from munit_cli.errors import MunitError
from munit_cli.heads.compose import FITS, NO_HEAD, TRANSLATE_FIT, HeadFraming
from munit_cli.heads.detector import open_detector
from munit_cli.images import DEFAULT_MAX_PIXELS
from munit_cli.inference import Translator, make_bank, resolve_direction, translate_files
from munit_cli.naming import plan_jobs
from munit_cli.outputs import Event, Summary
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import err_console, friendly, progress, warn, pick_precision
from munit_cli.styles import DEFAULT_NUM_STYLES, StyleOptions
from munit_cli.weights import DEFAULT_DETECTOR, resolve_model

EXTS = ("png", "jpg", "webp")


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


def _check_options(ext: str, batch_size: int | None, size: int | None, workers: int | None, keep_size: bool) -> str:
    """Refuse bad run options (exit 2), warn about ignored ones; the normalised --ext."""
    if ext.lower().lstrip(".") not in EXTS:
        raise MunitError(f"unsupported --ext {ext!r}: use {', '.join(EXTS)}", exit_code=2)
    for name, value in (("--batch-size", batch_size), ("--size", size)):
        if value is not None and value < 1:
            raise MunitError(f"{name} must be >= 1, got {value}", exit_code=2)
    if workers is not None and workers < 0:
        raise MunitError(f"--workers must be >= 0, got {workers}", exit_code=2)
    if keep_size and size is not None:
        warn("--size ignored: --keep-size processes each image at its own size")
    return ext.lower().lstrip(".")


class _Reporter:
    """Prints every written output (its path, or a JSON line) and drives the progress bar."""

    def __init__(self, inputs: int, as_json: bool, direction: str):
        self.inputs, self.as_json, self.direction, self.written = inputs, as_json, direction, 0
        self.stdout = sys.stdout  # captured before the live bar, which may redirect sys.stdout to its console
        self.bar = progress(TextColumn("{task.fields[outputs]} outputs"), _Rate())

    def __enter__(self) -> "_Reporter":
        self.bar.__enter__()
        self.task = self.bar.add_task("translating", total=self.inputs, outputs=0)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, e: Event) -> None:
        if e.kind != "output":
            if e.kind in ("failed", "skipped") and self.inputs > 1:  # a single input's reason is the error line
                warn(e.message)
            self.bar.advance(self.task)
            return
        self.written += 1
        self.bar.update(self.task, outputs=self.written)
        if self.as_json:
            self.stdout.write(json.dumps({"input": str(e.input), "output": str(e.output), "style_index": e.style_index,
                                          "style_source": e.style_source, "seed": e.seed,
                                          "direction": self.direction}) + "\n")
        else:
            self.stdout.write(f"{e.output}\n")
        self.stdout.flush()


def _finish(summary: Summary, outdir: Path) -> None:
    """Say what was skipped; fail (exit 1) when an input failed."""
    if summary.skipped:
        err_console.print(f"skipped {summary.skipped} existing output(s) in {str(outdir)!r} (pass --overwrite to replace them)",
                          highlight=False)
    if summary.passed and summary.inputs == 1:
        raise MunitError(summary.passed[0][1])
    if summary.passed:
        err_console.print(f"{len(summary.passed)} of {summary.inputs} photo(s) had no head and were skipped "
                          "(see the warnings above; --no-head whole translates them whole)", highlight=False)
    if summary.failed and summary.inputs == 1:
        raise MunitError(summary.failed[0][1])
    if summary.failed:
        raise MunitError(f"{len(summary.failed)} of {summary.inputs} input(s) failed and were skipped "
                         f"(see the warnings above); {summary.written} file(s) written")


@friendly
def translate(
    inputs: list[str] = typer.Argument(..., help="Image files, folders (recursive), glob patterns, or - to read paths from stdin."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="MODEL", help="Checkpoint .safetensors, run directory, or model name in weights/ (default: the shipped model)."),
    to: Optional[str] = typer.Option(None, "--to", metavar="DOMAIN", help="Target domain name (e.g. cat)."),
    direction: Optional[str] = typer.Option(None, "--direction", metavar="DIR", help="a2b | b2a (or e.g. dog2cat) (default: a2b)."),
    style: str = typer.Option("random", "--style", metavar="NAME", help="random: codes drawn from N(0, I) (see --style-from / --style-file for the others)."),
    num_styles: Optional[int] = typer.Option(None, "--num-styles", "-n", metavar="N", help=f"Random styles per input (default: {DEFAULT_NUM_STYLES})."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of the random style codes (drawn on the CPU: same codes on every device)."),
    per_image: bool = typer.Option(False, "--per-image", metavar="", help="Fresh random codes per input (seeded from --seed and the input index)."),
    truncation: float = typer.Option(1.0, "--truncation", metavar="PSI", help="Scale random codes toward 0 (psi < 1: tamer looks)."),
    style_from: Optional[list[str]] = typer.Option(None, "--style-from", metavar="REF", help="Reference image or folder whose style to use; repeat for several."),
    mean_style: bool = typer.Option(False, "--mean-style", metavar="", help="Average the --style-from references into one style."),
    style_file: Optional[Path] = typer.Option(None, "--style-file", metavar="FILE", help="Style codes saved by `munit sample-styles`, used in order."),
    size: Optional[int] = typer.Option(None, "--size", metavar="PX", help="Resize the shorter side to this (default: the model's image size)."),
    keep_size: bool = typer.Option(False, "--keep-size", metavar="", help="Process each image at its own size."),
    outdir: Path = typer.Option(Path("translated"), "--outdir", "-o", metavar="DIR", help="Output folder; outputs mirror the inputs' sub-folders (see Output names above)."),
    ext: str = typer.Option("png", "--ext", metavar="EXT", help="Output format: png | jpg | webp."),
    grid: bool = typer.Option(False, "--grid", metavar="", help="Also write {stem}_grid: the input then its outputs."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace existing outputs (default: skip them, so a rerun resumes)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="One JSON line per written file on stdout, nothing else."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="N", help="Styles decoded per forward pass (default: 8 at 256 px, fewer for larger images)."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", metavar="NAME", help=PRECISION_HELP + "."),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="Background threads decoding inputs and writing outputs (default: min(4, CPUs))."),
    raw_weights: bool = typer.Option(False, "--raw-weights", metavar="", help="Use the raw weights even if the checkpoint has EMA weights."),
    no_ema: bool = typer.Option(False, "--no-ema", hidden=True, help="Old name of --raw-weights."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, metavar="N", help="Refuse larger images (decompression-bomb guard; 0: no limit)."),
    heads: Optional[bool] = typer.Option(None, "--heads/--no-heads", help="Whole photos: find the cat's or dog's head, translate its square crop and paste the result back into the photo at full resolution with a soft edge (default: on for a model whose metadata says it was trained on head crops)."),
    detector: Optional[str] = typer.Option(None, "--detector", metavar="FILE", help=f"Head detector for --heads (default: {DEFAULT_DETECTOR} from weights/)."),
    no_head: str = typer.Option("skip", "--no-head", metavar="WHAT", help="--heads on a photo without a head: skip (reported) | whole (translate the whole photo)."),
    margin: float = typer.Option(1.0, "--margin", metavar="X", help="--heads: scale of the crop about the head (1.0: the framing of munit heads and ../shared/data/heads)."),
    fit: str = typer.Option(TRANSLATE_FIT, "--fit", metavar="HOW", help="--heads, where the window reaches past the photo: pad = keep it centred, black outside (like the training crops of heads/); inside = move it in (shrink it to the photo if larger)."),
) -> None:
    """Translate images to the other domain with N styles each.

    Output names: an input mirrors its path relative to the folder (or glob root) it was found under (photos/sub/x.jpg -> OUTDIR/sub/x_00.png); inputs from different folders that would share a name mirror their common parent folder (a/x.jpg, b/x.jpg -> a/x_00.png, b/x_00.png); files of one folder sharing a stem keep their extension (x.jpg, x.png -> x.jpg_00.png, x.png_00.png). The same inputs always get the same names, so a rerun skips what exists.

    Examples:

      munit translate dog.jpg --to cat -n 8 --grid

      munit translate photos/ --style-from ref_cat.jpg --outdir out/

      find photos -name '*.jpg' | munit translate - --json --seed 3

      munit translate sofa-cat.jpg --to dog --heads -n 4 --grid
    """
    ext = _check_options(ext, batch_size, size, workers, keep_size)
    styles = StyleOptions(num_styles=num_styles, seed=seed, truncation=truncation, per_image=per_image,
                          refs=tuple(style_from or ()), mean=mean_style, style_file=style_file, style=style)
    for line in styles.check():
        warn(line)
    dev = resolve_device(device)
    precision = pick_precision(precision, dev)
    jobs = plan_jobs(read_stdin_items(inputs), exclude=outdir)
    bundle = load_generators(resolve_model(model), prefer_ema=not (raw_weights or no_ema))
    src, tgt = resolve_direction(bundle, to, direction)
    proc_size = None if keep_size else (size or bundle.info.image_size)
    tr = Translator(bundle, src, tgt, dev, precision, batch_size, style_encoder=bool(style_from))
    framing = _framing(heads, bundle.info.meta.get("framing") == "heads", detector, no_head, margin, fit, dev,
                       precision, proc_size, max_pixels)
    bank, notes = make_bank(tr, styles, size=proc_size, max_pixels=max_pixels, load=framing and framing.reference)
    for line in notes + (framing.notes if framing else []):
        warn(line)
    ensure_writable_dir(outdir, "--outdir ")
    with _Reporter(len(jobs), as_json, tr.direction) as report:
        summary = translate_files(tr, jobs, bank, outdir, ext=ext, grid=grid, overwrite=overwrite, size=proc_size,
                                  max_pixels=max_pixels, workers=default_workers() if workers is None else workers,
                                  report=report, prepare=framing and framing.prepare)
    _finish(summary, outdir)


def _framing(heads: bool | None, model_heads: bool, detector: str | None, no_head: str, margin: float, fit: str, dev,
             precision: str, size: int | None, max_pixels: int) -> HeadFraming | None:
    """The --heads set-up, or None (after saying which head options are ignored)."""
    if no_head not in NO_HEAD:
        raise MunitError(f"unknown --no-head {no_head!r}: use {' or '.join(NO_HEAD)}", exit_code=2)
    if fit not in FITS:
        raise MunitError(f"unknown --fit {fit!r}: use {' or '.join(FITS)}", exit_code=2)
    if not (model_heads if heads is None else heads):
        given = [name for name, used in (("--detector", detector is not None), ("--no-head", no_head != "skip"),
                                         ("--margin", margin != 1.0), ("--fit", fit != TRANSLATE_FIT)) if used]
        if given:
            warn(f"{', '.join(given)} ignored: they apply to --heads")
        return None
    if heads is None:
        err_console.print("--heads is on: this model was trained on head crops (--no-heads translates whole images)",
                          highlight=False)
    return HeadFraming(open_detector(detector, dev, precision), size, margin, no_head, max_pixels, fit)
