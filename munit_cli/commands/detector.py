"""`munit train-detector` and `munit eval-detector`: the head detector behind `munit heads`
and `translate --heads`, trained from a boxes.json and photo folders, measured on held-out photos."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import TextColumn

from munit_cli.atomic import refuse_overwrite
from munit_cli.commands.heads import load_checked_detector
from munit_cli.errors import MunitError
from munit_cli.heads.data import (PhotoSet, check_disjoint, first_per_domain, list_photos, load_photos, median_box, read_boxes,
                                  select_training, split_probe)
from munit_cli.heads.detector import Detector, Recipe, save_detector
from munit_cli.heads.training import EvalPhoto, evaluate, train_detector
from munit_cli.images import DEFAULT_MAX_PIXELS
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import err_console, friendly, pick_precision, print_json, progress, warn
from munit_cli.weights import DEFAULT_DETECTOR

_R = Recipe()


def _domains(value: Optional[str]) -> Optional[list[str]]:
    return [d.strip() for d in value.split(",") if d.strip()] if value else None


def _eval_photos(root: Path, boxes: dict, domains: Optional[list[str]], limit: Optional[int]) -> list[EvalPhoto]:
    """The held-out photos, at most `limit` per domain (the first, sorted)."""
    return [EvalPhoto(p.domain, p.path, p.box) for p in first_per_domain(list_photos(root, boxes, domains), limit)]


def _print_figures(fig: dict) -> None:
    """The held-out figures, one line per domain, then the speed."""
    for dom, s in fig["domains"].items():
        line = (f"{dom}: {s['n']} photos with a reference box: IoU >= 0.5 on {s['iou50']:.1%} "
                f"({s['hit50']:.1%} with the head found), median IoU {s['median_iou']:.3f}, no head {s['no_head']:.1%}")
        if s.get("false_heads") is not None:
            line += f"; head-free crops called a head {s['false_heads']:.1%} of {s['negatives']}"
        if s.get("unlabelled_found") is not None:
            line += f"; a head found on {s['unlabelled_found']:.1%} of {s['unlabelled']} photos without a reference box"
        if s.get("centre_iou50") is not None:
            line += f" (a fixed centre box: IoU >= 0.5 on {s['centre_iou50']:.1%})"
        print(line)
    sp = fig.get("speed") or {}
    if sp.get("ms_per_photo") is not None:
        print(f"speed: {sp['ms_per_photo']:.1f} ms per photo (decode + detect, median of {sp['photos']}) on {sp['cpu']} "
              f"({sp['device']}, {sp['threads']} thread(s)); threshold {fig['threshold']:.3f}")


@friendly
def train_detector_cmd(
    photos: Path = typer.Option(..., "--photos", metavar="DIR", help="Training photos: DIR/DOMAIN/*.jpg for each domain of --boxes (e.g. ../shared/data/pets)."),
    boxes: Path = typer.Option(..., "--boxes", metavar="FILE", help='Head windows: {"DOMAIN": {"FILE NAME": [left, top, right, bottom]}} in each photo\'s pixels (e.g. ../shared/data/heads/boxes.json). Only photos with a box are used.'),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE", help="Output .safetensors detector."),
    eval_photos: Optional[Path] = typer.Option(None, "--eval-photos", metavar="DIR", help="Held-out photos (DIR/DOMAIN/*.jpg, boxes from --boxes), never trained on: measured at the end and the figures stored in the file."),
    domains: Optional[str] = typer.Option(None, "--domains", metavar="A,B", help="Domains to use (default: every domain of --boxes with a folder in --photos)."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", metavar="GLOB", help="Leave out training photos whose name matches (e.g. '49??.jpg'); repeat for several."),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", help="At most this many photos with a box per domain (the first, sorted), and held-out photos per domain: a quick check."),
    probe: float = typer.Option(_R.probe, "--probe", metavar="FRAC", help="Fraction of the training photos kept out to choose the confidence threshold (by a hash of the file name)."),
    input_size: int = typer.Option(_R.input_size, "--input-size", metavar="PX", help="Side of the letterboxed photo the network sees (a multiple of 32)."),
    widths: str = typer.Option(",".join(map(str, _R.widths)), "--widths", metavar="W,W,W,W,W", help="Channels of the five conv stages (strides 2 to 32): wider is slower and may be more accurate."),
    epochs: int = typer.Option(_R.epochs, "--epochs", metavar="N", help="Passes over the training photos."),
    batch_size: int = typer.Option(_R.batch_size, "--batch-size", metavar="N", help="Photos per step."),
    lr: float = typer.Option(_R.lr, "--lr", metavar="LR", help="AdamW peak learning rate (warm-up, then cosine)."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of the initialisation, order and augmentation."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", metavar="NAME", help=PRECISION_HELP + "."),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="Threads decoding photos (default: min(4, CPUs))."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", metavar="N", min=0, help="Skip larger images (decompression-bomb guard; 0: no limit)."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace an existing --out."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object with the figures."),
) -> None:
    """Train the head detector that `munit heads` and `translate --heads` use.

    A small CNN from scratch (under 1 M parameters, 3.6 MB): it sees each photo letterboxed at 128 px and marks the centre of the most prominent head with its size. Photos with a box are the positives; photos without one are not used (a missing box is not a missing head): head-free examples are made from the parts of photos beside the box. The confidence threshold is chosen on a probe split of the training photos; with --eval-photos the held-out figures (IoU >= 0.5 rate, median IoU, no-head rate, speed on this CPU) are measured and stored in the file.

    Examples:

      munit train-detector --photos ../shared/data/pets --boxes ../shared/data/heads/boxes.json --eval-photos ../shared/data/heads/photos --out weights/pets-heads-detector.safetensors

      munit train-detector --photos pets --boxes boxes.json --out det.safetensors --limit 200 --epochs 2
    """
    try:
        stage_widths = tuple(int(w) for w in widths.split(","))
        if len(stage_widths) != 5 or min(stage_widths) < 1:
            raise ValueError
    except ValueError:
        raise MunitError(f"--widths must be five positive integers separated by commas, got {widths!r}", exit_code=2)
    recipe = Recipe(input_size=input_size, widths=stage_widths, epochs=epochs, batch_size=batch_size, lr=lr, probe=probe,
                    seed=seed)
    recipe.validate()
    if limit is not None and limit < 2:
        raise MunitError(f"--limit must be >= 2, got {limit}", exit_code=2)
    refuse_overwrite(out, overwrite)
    dev = resolve_device(device)
    prec = pick_precision(precision, dev)
    all_boxes = read_boxes(boxes)
    chosen = select_training(photos, all_boxes, _domains(domains), exclude, limit)
    for d, (kept, found) in chosen.counts.items():
        err_console.print(f"{d}: {kept} of {found} photos have a box (the others are not used)", highlight=False, markup=False)
    positives, doms = chosen.positives, list(chosen.counts)
    held = _eval_photos(eval_photos, all_boxes, doms, limit) if eval_photos else []
    check_disjoint(positives, held)
    train_photos, probe_photos = split_probe(positives, recipe.probe)
    if len(train_photos) < recipe.batch_size or not probe_photos:
        raise MunitError(f"{len(train_photos)} training and {len(probe_photos)} probe photos with a box: too few "
                         f"(at least --batch-size {recipe.batch_size} and 1); add photos or lower --batch-size")
    n_workers = workers or min(4, os.cpu_count() or 1)
    with progress(TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("decoding", total=len(positives), info="")
        sets: list[PhotoSet] = [load_photos(ps, recipe.store_size, max_pixels, n_workers, lambda k, i: bar.advance(task))
                                for ps in (train_photos, probe_photos)]
        for s in sets:
            for p in s.unreadable:
                warn(f"unreadable photo skipped: {str(p)!r}")

        def on(kind: str, info: dict) -> None:
            nonlocal task
            if kind == "start":
                task = bar.add_task("training", total=info["epochs"] * info["batches"], info="")
            elif kind == "batch":
                bar.update(task, advance=1, info=f"epoch {info['epoch']}/{recipe.epochs}  loss {info['loss']:.3f}")
            elif kind == "epoch":
                bar.console.print(f"epoch {info['epoch']}: loss {info['loss']:.3f} (focal {info['focal']:.3f}, "
                                  f"offset {info['offset']:.3f}, size {info['size']:.3f}), probe IoU >= 0.5 "
                                  f"{info.get('probe_iou50', 0):.1%}, median IoU {info.get('probe_median_iou', 0):.3f}",
                                  highlight=False)

        net, figures = train_detector(sets[0], sets[1], recipe, dev, prec, on)
        mean_box = median_box(sets[0])
        meta = {"mean_box": json.dumps(mean_box)}
        det = Detector(net, recipe, figures["threshold"], out, meta).to(dev, prec)
        heldout = None
        if held:
            task = bar.add_task("held-out", total=len(held), info="")
            heldout = evaluate(det, held, max_pixels, callback=lambda k, i: bar.advance(task))
    split = {"rule": f"probe when sha1(file name) < {recipe.probe} (as a fraction of 2**64); photos without a box unused",
             "photos": str(photos), "boxes": str(boxes), "exclude": exclude or [], "limit": limit,
             "train_counts": {d: sum(p.domain == d for p in sets[0].photos) for d in doms},
             "probe_files": {d: [p.path.name for p in sets[1].photos if p.domain == d] for d in doms},
             "eval_photos": str(eval_photos) if eval_photos else None,
             "unreadable": [str(p) for s in sets for p in s.unreadable]}
    save_detector(out, net, recipe, figures["threshold"], domains=json.dumps(doms), split=json.dumps(split),
                  probe=json.dumps(figures["probe"]), history=json.dumps(figures["history"]),
                  heldout=json.dumps(heldout) if heldout else "", time_s=f"{figures['time_s']:.1f}", device=str(dev),
                  **meta)
    result = {"out": str(out), "threshold": figures["threshold"], "probe": figures["probe"], "heldout": heldout,
              "train_photos": split["train_counts"], "time_s": round(figures["time_s"], 1), "device": str(dev),
              "precision": prec}
    if as_json:
        print_json(result)
        return
    p = figures["probe"]
    print(f"{out}: trained on {len(sets[0])} photos in {figures['time_s']:.0f} s; threshold {figures['threshold']:.3f} "
          f"(probe: IoU >= 0.5 on {p['iou50']:.1%}, no head {p['no_head']:.1%}, head-free crops called a head "
          f"{p['false_heads']:.1%})")
    if heldout:
        _print_figures(heldout)


@friendly
def eval_detector_cmd(
    photos: Path = typer.Option(..., "--photos", metavar="DIR", help="Held-out photos: DIR/DOMAIN/*.jpg (e.g. ../shared/data/heads/photos)."),
    boxes: Path = typer.Option(..., "--boxes", metavar="FILE", help="Reference head windows (boxes.json); photos without one are counted apart."),
    detector: Optional[str] = typer.Option(None, "--detector", metavar="FILE", help=f"Detector file (default: {DEFAULT_DETECTOR} from weights/)."),
    domains: Optional[str] = typer.Option(None, "--domains", metavar="A,B", help="Domains to measure (default: every domain of --boxes with a folder in --photos)."),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", help="At most this many photos per domain (the first, sorted)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", metavar="P", help="Confidence a head needs (default: the detector's own)."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", metavar="NAME", help=PRECISION_HELP + "."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", metavar="N", min=0, help="Skip larger images (decompression-bomb guard; 0: no limit)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object with the figures."),
) -> None:
    """Measure a head detector on held-out photos with reference boxes.

    Per domain: the share of photos whose box has IoU >= 0.5 with the reference (and with the head found), the median IoU, the share called "no head", the share of head-free crops (beside the reference box) called a head, and, on photos without a reference box, how often a head is found; then the time per photo on this CPU, one photo at a time (set OMP_NUM_THREADS for the thread count).

    Examples:

      munit eval-detector --photos ../shared/data/heads/photos --boxes ../shared/data/heads/boxes.json

      munit eval-detector --detector det.safetensors --photos held/ --boxes boxes.json --json
    """
    det = load_checked_detector(detector, device, precision, threshold)
    held = _eval_photos(photos, read_boxes(boxes), _domains(domains), limit)
    with progress() as bar:
        task = bar.add_task("detecting", total=len(held))
        fig = evaluate(det, held, max_pixels, callback=lambda k, i: bar.advance(task))
    if as_json:
        print_json({"detector": str(det.path), **fig})
    else:
        _print_figures(fig)
