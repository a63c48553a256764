"""`munit eval`: success rate, diversity and FID / KID of a model on held-aside test images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from munit_cli.atomic import refuse_overwrite
from munit_cli.checkpoint import GeneratorBundle, load_generators
from munit_cli.classifier import load_classifier
from munit_cli.errors import MunitError
from munit_cli.evaluation import Measures, eval_folder, eval_steps, evaluate, load_eval_images, overlap_warnings
from munit_cli.images import DEFAULT_MAX_PIXELS, discover_images, find_images, make_grid, save_image
from munit_cli.metrics import INCEPTION_FILES, LPIPS_FILES, InceptionFeatures, find_weights, load_lpips
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import friendly, pick_precision, print_json, progress, warn
from munit_cli.weights import resolve_model

LABELS = {"lpips": "LPIPS", "classifier_feature_distance": "clf-feat dist", "fid": "FID", "kid": "KID",
          "classifier_fid": "classifier-FID", "classifier_kid": "classifier-KID"}


def _paths(bundle: GeneratorBundle, data: Path | None, src_images: list[str], tgt_images: list[str],
           limit: int | None) -> dict[str, list[Path]]:
    """The eval images of domains a and b: --src-images / --tgt-images, or ROOT/{test,val,}/NAME."""
    if bool(src_images) != bool(tgt_images):
        raise MunitError("pass both --src-images and --tgt-images (domain a and domain b)", exit_code=2)
    if src_images:
        if data is not None:
            warn("--data ignored: the images come from --src-images / --tgt-images")
        found = {"a": discover_images(src_images), "b": discover_images(tgt_images)}
    elif data is not None:
        found = {d: find_images(eval_folder(data, name)) for d, name in zip("ab", bundle.info.domains)}
    else:
        raise MunitError("pass --data ROOT (with test/NAME or val/NAME folders) or --src-images and --tgt-images",
                         exit_code=2)
    return {d: fs[:limit] if limit else fs for d, fs in found.items()}


def _fmt(fig: dict, digits: int = 3) -> str:
    return f"{fig['mean']:.{digits}f}±{fig['std']:.{digits}f}"


def _print_table(report: dict) -> None:
    m = report["measures"]
    div, fid_key = m["diversity"], m["distribution"].split("/")[0]
    kid_key = fid_key.replace("fid", "kid")
    t = Table(title=f"munit eval: {len(report['seeds'])} seed(s), {report['num_styles']} styles per input")
    for col in ("direction", "mode", "success", "ceiling", "floor", LABELS[div], "real photos",
                LABELS[fid_key], LABELS[kid_key], "n"):
        t.add_column(col, justify="left" if col in ("direction", "mode") else "right")
    for name, d in report["directions"].items():
        for mode, f in d["modes"].items():
            t.add_row(name, mode, _fmt(f["success"]), f"{d['ceiling']:.3f}", f"{d['floor']:.3f}", _fmt(f[div]),
                      f"{d['real_' + div]:.3f}", _fmt(f[fid_key], 1), _fmt(f[kid_key], 4), str(f["outputs_per_seed"]))
    out = Console()
    if not out.is_terminal:  # a log file: room for the whole table
        out = Console(width=140)
    out.print(t)
    out.print(f"images: {', '.join(f'{k} {v}' for k, v in report['images'].items())}; "
              f"time {report['time_s']:.0f} s; classifier held-out accuracy "
              + ", ".join(f"{k} {v:.3f}" for k, v in m["classifier_holdout_accuracy"].items()), highlight=False)


@friendly
def eval_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="MODEL", help="Checkpoint .safetensors, run directory, or model name (default: the shipped model)."),
    classifier: Path = typer.Option(..., "--classifier", "-c", metavar="FILE", help="Domain classifier from `munit train-classifier`."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="DIR", help="Root with test/NAME, val/NAME or NAME folders for the model's domains."),
    src_images: Optional[list[str]] = typer.Option(None, "--src-images", metavar="GLOB", help="Test images of domain a (files, folders, globs); repeat for several."),
    tgt_images: Optional[list[str]] = typer.Option(None, "--tgt-images", metavar="GLOB", help="Test images of domain b, like --src-images."),
    num_styles: int = typer.Option(10, "--num-styles", "-n", metavar="N", min=2, help="Styles per input (outputs whose diversity is measured)."),
    seeds: int = typer.Option(3, "--seeds", metavar="N", min=1, help="Repeat with this many seeds (--seed, --seed + 1, ...): mean and spread."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="First seed of the styles and reference picks."),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", min=2, help="At most this many images per domain (the first, sorted)."),
    grid: Optional[Path] = typer.Option(None, "--grid", metavar="FILE", help="Write a contact sheet: inputs and their outputs, both directions."),
    grid_rows: int = typer.Option(4, "--grid-rows", metavar="N", min=1, help="Inputs per direction on the contact sheet (latent, then reference rows)."),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", metavar="FILE", help=f"FID InceptionV3 weights ({INCEPTION_FILES[0]}; default: the torch hub cache) for real FID/KID [eval extra]."),
    lpips_weights: Optional[Path] = typer.Option(None, "--lpips-weights", metavar="FILE", help=f"torchvision AlexNet weights ({LPIPS_FILES[0]}; default: the torch hub cache) for LPIPS diversity [eval extra]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="N", min=1, help="Styles decoded per forward pass (default: 8 at 256 px)."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", metavar="NAME", help=PRECISION_HELP + "."),
    raw_weights: bool = typer.Option(False, "--raw-weights", metavar="", help="Use the raw weights even if the checkpoint has EMA weights."),
    no_ema: bool = typer.Option(False, "--no-ema", hidden=True, help="Old name of --raw-weights."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", metavar="N", min=0, help="Skip larger images (decompression-bomb guard; 0: no limit)."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace an existing --grid file."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the full report as one JSON object."),
) -> None:
    """Measure how well a model translates: success rate, diversity, FID / KID, per direction.

    Each input is translated with --num-styles styles in both directions, with random styles
    (latent) and with the styles of random real target images (reference), once per seed.
    success: fraction the classifier calls the target domain, next to its accuracy on the real
    target images (ceiling) and its target score on the untranslated inputs (floor).
    Diversity: mean pairwise LPIPS of one input's outputs (with LPIPS weights), else the mean
    pairwise distance of classifier features, beside the same among real photos. FID / KID
    against the real target images, in Inception space (with its weights) or classifier space.

    Examples:

      munit eval -m runs/d2c -c clf.safetensors --data afhq

      munit eval -c pets-clf.safetensors --src-images 'pets/cat/49??.jpg' --tgt-images 'pets/dog/49??.jpg' --json
    """
    dev = resolve_device(device)
    prec = pick_precision(precision, dev)
    if grid is not None:
        refuse_overwrite(grid, overwrite)
    bundle = load_generators(resolve_model(model), prefer_ema=not (raw_weights or no_ema))
    clf = load_classifier(classifier).to(dev)
    paths = _paths(bundle, data, src_images or [], tgt_images or [], limit)
    images = {d: load_eval_images(name, paths[d], bundle.info.image_size, max_pixels)
              for d, name in zip("ab", bundle.info.domains)}
    notes = overlap_warnings(clf, bundle.info.meta, list(images.values()))
    notes += [f"{len(im.unreadable)} unreadable image(s) of {im.name!r} skipped" for im in images.values() if im.unreadable]
    for note in notes:
        warn(note)
    inc_path = find_weights(inception_weights, INCEPTION_FILES, "--inception-weights")
    lp_path = find_weights(lpips_weights, LPIPS_FILES, "--lpips-weights")
    measures = Measures(clf, InceptionFeatures(inc_path, dev) if inc_path else None,
                        load_lpips(lp_path, dev) if lp_path else None, prec)
    with progress() as bar:
        task = bar.add_task("evaluating", total=eval_steps(bundle, images, seeds))
        result = evaluate(bundle, measures, images, device=dev, num_styles=num_styles,
                          seeds=[seed + i for i in range(seeds)], batch_size=batch_size,
                          grid_inputs=grid_rows if grid else 0, callback=lambda kind, info: bar.advance(task))
    result.report.update(warnings=notes, device=str(dev), precision=prec)
    if grid is not None:
        save_image(make_grid(result.grid_rows), grid)
        result.report["grid"] = str(grid)
    if as_json:
        print_json(result.report)
    else:
        _print_table(result.report)
