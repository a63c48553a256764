"""`munit heads`: square head crops of whole photos, for a training set (AFHQ-like framing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.progress import TextColumn

from munit_cli.atomic import ensure_writable_dir
from munit_cli.commands.translate import default_workers, read_stdin_items
from munit_cli.errors import MunitError
from munit_cli.heads.compose import FITS
from munit_cli.heads.crops import MANIFEST, Outcome, crop_heads
from munit_cli.heads.detector import open_detector
from munit_cli.images import DEFAULT_MAX_PIXELS
from munit_cli.naming import plan_jobs
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import err_console, friendly, pick_precision, progress, warn
from munit_cli.weights import DEFAULT_DETECTOR

EXTS = ("jpg", "png", "webp")
LISTED = 5  # photos without a head named in the summary (the manifest lists all)


def load_checked_detector(spec: Optional[str], device: str, precision: str, threshold: Optional[float] = None):
    """The --detector (default: the shipped one) on --device, with an optional threshold."""
    dev = resolve_device(device)
    return open_detector(spec, dev, pick_precision(precision, dev), threshold)


class _Reporter:
    """Prints each photo (its crop's path, or its JSON line) and drives the progress bar."""

    def __init__(self, bar, task, as_json: bool):
        self.bar, self.task, self.as_json = bar, task, as_json
        self.stdout = sys.stdout
        self.counts = {"written": 0, "existing": 0, "no_head": 0, "failed": 0}

    def __call__(self, o: Outcome) -> None:
        self.counts[o.status] += 1
        self.bar.update(self.task, advance=1, info=f"{self.counts['written']} crops, {self.counts['no_head']} no head")
        if o.status == "failed":
            warn(o.message)
            return
        if self.as_json:
            self.stdout.write(json.dumps(o.line()) + "\n")
        elif o.status == "written":
            self.stdout.write(f"{o.output}\n")
        self.stdout.flush()


@friendly
def heads(
    inputs: list[str] = typer.Argument(..., metavar="SRC", help="Photos: files, folders (recursive), glob patterns, or - to read paths from stdin."),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Output folder: one crop per photo with a head (mirroring the inputs' sub-folders), manifest.jsonl and options.json."),
    size: int = typer.Option(256, "--size", metavar="PX", help="Side of the square crops."),
    margin: float = typer.Option(1.0, "--margin", metavar="X", help="Scale of the window about the head's centre: 1.0 frames like ../shared/data/heads (the whole head, ears and chin, AFHQ-like); 1.2 shows more around it."),
    fit: str = typer.Option("inside", "--fit", metavar="HOW", help="Where the window reaches past the photo: inside = move it in (shrink it to the photo if larger); pad = keep it centred, black outside (like heads/)."),
    ext: str = typer.Option("jpg", "--ext", metavar="EXT", help="Crop format: jpg | png | webp."),
    detector: Optional[str] = typer.Option(None, "--detector", metavar="FILE", help=f"Head detector from `munit train-detector` (default: {DEFAULT_DETECTOR} from weights/)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", metavar="P", help="Confidence a head needs (default: the detector's own, chosen when it was trained)."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Redo every photo (default: skip photos whose crop and manifest entry exist, so a rerun resumes)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help='One JSON line per photo on stdout: {"source", "box" [left, top, right, bottom] in the photo\'s pixels or null, "confidence", "output" or null}.'),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", metavar="NAME", help=PRECISION_HELP + "."),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="Background threads decoding photos (default: min(4, CPUs))."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, metavar="N", help="Skip larger images (decompression-bomb guard; 0: no limit)."),
) -> None:
    """Cut the head of the cat or dog in each photo into a square crop: a training set for a
    model of heads (AFHQ-like) from folders of whole photos.

    A small CNN finds the most prominent head (or none) in well under a second per photo on a CPU. Each crop is written as OUT/{stem}.EXT; OUT/manifest.jsonl records every photo's box, confidence and crop (null where no head was found). Unreadable files are named and skipped (exit 1 at the end, after every good photo is done).

    Examples:

      munit heads ~/pets/cats --out cat-heads --size 128

      munit heads 'photos/**/*.jpg' --out heads/ --margin 1.2 --json | jq -r 'select(.box == null) | .source'
    """
    ext = ext.lower().lstrip(".")
    if ext not in EXTS:
        raise MunitError(f"unsupported --ext {ext!r}: use {', '.join(EXTS)}", exit_code=2)
    if size < 16:
        raise MunitError(f"--size must be >= 16, got {size}", exit_code=2)
    if fit not in FITS:
        raise MunitError(f"unknown --fit {fit!r}: use {' or '.join(FITS)}", exit_code=2)
    if margin <= 0:
        raise MunitError(f"--margin must be > 0, got {margin}", exit_code=2)
    det = load_checked_detector(detector, device, precision, threshold)
    jobs = plan_jobs(read_stdin_items(inputs), exclude=out)
    ensure_writable_dir(out, "--out ")
    options = {"inputs": inputs, "detector": str(det.path), "threshold": det.threshold, "size": size,
               "margin": margin, "fit": fit, "ext": ext}
    with progress(TextColumn("{task.fields[info]}")) as bar:
        report = _Reporter(bar, bar.add_task("finding heads", total=len(jobs), info=""), as_json)
        outcomes = crop_heads(det, jobs, out, size=size, margin=margin, fit=fit, ext=ext, overwrite=overwrite,
                              workers=default_workers() if workers is None else workers, max_pixels=max_pixels,
                              options=options, report=report)
    _summary(outcomes, out)


def _summary(outcomes: list[Outcome], out: Path) -> None:
    by = {s: [o for o in outcomes if o.status == s] for s in ("written", "existing", "no_head", "failed")}
    line = f"{len(outcomes)} photo(s): {len(by['written'])} crop(s) written"
    if by["existing"]:
        line += f", {len(by['existing'])} existing kept (--overwrite redoes them)"
    line += f", {len(by['no_head'])} without a head"
    err_console.print(line + f"; manifest: {out / MANIFEST}", highlight=False, markup=False, soft_wrap=True)
    if by["no_head"]:
        names = ", ".join(str(o.source) for o in by["no_head"][:LISTED])
        more = f" and {len(by['no_head']) - LISTED} more (null boxes in the manifest)" if len(by["no_head"]) > LISTED else ""
        err_console.print(f"no head found in: {names}{more}", highlight=False, markup=False, soft_wrap=True)
    if by["failed"]:
        raise MunitError(f"{len(by['failed'])} of {len(outcomes)} file(s) could not be read and were skipped "
                         f"(named above); every other photo is done")
