"""`munit train-classifier`: the domain classifier that `munit eval` and the training probe use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.progress import TextColumn

from munit_cli.atomic import refuse_overwrite
from munit_cli.classifier import Recipe, default_store_size, load_class, save_classifier, select_files, train_classifier
from munit_cli.datasets import resolve_domain
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.ui import friendly, pick_precision, print_json, progress, warn

_R = Recipe()


@friendly
def train_classifier_cmd(
    src: str = typer.Option(..., "--src", metavar="DOMAIN", help="Domain a: a folder, or a name under --data (ROOT/NAME or ROOT/train/NAME)."),
    tgt: str = typer.Option(..., "--tgt", metavar="DOMAIN", help="Domain b, like --src."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="DIR", help="Data root holding the domain folders, as in train."),
    out: Path = typer.Option(..., "--out", "-o", metavar="FILE", help="Output .safetensors classifier."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", metavar="GLOB", help="Leave out files whose name or relative path matches this pattern (e.g. '49??.jpg'); repeat for several."),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", help="At most this many images per domain (the first, sorted)."),
    holdout: float = typer.Option(_R.holdout, "--holdout", metavar="FRAC", help="Fraction held out to measure accuracy (chosen by a hash of the file name)."),
    image_size: int = typer.Option(_R.image_size, "--image-size", metavar="PX", help="Side of the square the network sees."),
    epochs: int = typer.Option(_R.epochs, "--epochs", metavar="N", help="Passes over the training images."),
    batch_size: int = typer.Option(_R.batch_size, "--batch-size", metavar="N", help="Images per step."),
    lr: float = typer.Option(_R.lr, "--lr", metavar="LR", help="AdamW peak learning rate (warm-up, then cosine)."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of the initialisation, order and augmentation."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: str = typer.Option("auto", "--precision", metavar="NAME", help=PRECISION_HELP + "."),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="Threads decoding images (default: min(4, CPUs))."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", metavar="N", min=0, help="Skip larger images (decompression-bomb guard; 0: no limit)."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace an existing --out."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object with the figures."),
) -> None:
    """Train the domain classifier that judges translations (munit eval, train --eval-every).

    A small CNN from scratch, a few minutes on a CPU. It keeps a held-out split and stores its
    held-out accuracy, the split, the recipe and hashes of its training images in the file.
    Keep the images you will evaluate on out of it (--exclude, or another folder).

    Examples:

      munit train-classifier --data ../pets --src cat --tgt dog --exclude '48??.jpg' --exclude '49??.jpg' --out pets-clf.safetensors

      munit train-classifier --src photos/dogs --tgt photos/cats --out clf.safetensors --epochs 20
    """
    if limit is not None and limit < 2:
        raise MunitError(f"--limit must be >= 2, got {limit}", exit_code=2)
    recipe = Recipe(image_size=image_size, store_size=default_store_size(image_size), epochs=epochs,
                    batch_size=batch_size, lr=lr, holdout=holdout, seed=seed)
    recipe.validate()
    refuse_overwrite(out, overwrite)
    dev = resolve_device(device)
    prec = pick_precision(precision, dev)
    folders = [resolve_domain(data, name) for name in (src, tgt)]
    if folders[0].resolve() == folders[1].resolve():
        raise MunitError(f"--src and --tgt are the same folder ({folders[0]}): pass two domains", exit_code=2)
    files = [select_files(f, exclude or [], limit) for f in folders]
    for name, f, fs in zip((src, tgt), folders, files):
        if len(fs) < 2:
            raise MunitError(f"domain {name!r} ({f}) has {len(fs)} image(s) left: it needs at least 2")
    names = [Path(f).name for f in folders]
    with progress(TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("decoding", total=sum(map(len, files)), info="")
        classes = [load_class(n, fs, recipe, max_pixels, workers or min(4, os.cpu_count() or 1),
                              lambda kind, info: bar.advance(task)) for n, fs in zip(names, files)]

        def on(kind: str, info: dict) -> None:
            nonlocal task
            if kind == "start":
                task = bar.add_task("training", total=info["epochs"] * info["batches"], info="")
            elif kind == "batch":
                bar.update(task, advance=1, info=f"epoch {info['epoch']}/{epochs}  loss {info['loss']:.3f}")
            elif kind == "epoch":
                bar.console.print(f"epoch {info['epoch']}: loss {info['loss']:.3f}, train acc {info['train_acc']:.3f}, "
                                  "held-out " + ", ".join(f"{k} {v:.3f}" for k, v in info["holdout_acc"].items()),
                                  highlight=False)

        for c in classes:
            if c.unreadable:
                warn(f"{len(c.unreadable)} unreadable image(s) of {c.name!r} skipped (e.g. {str(c.unreadable[0])!r})")
        net, figures = train_classifier(classes, recipe, dev, prec, on)
    save_classifier(out, net, recipe, classes, figures, folders, str(dev))
    result = {"out": str(out), "holdout_accuracy": figures["holdout_accuracy"],
              "train_images": {c.name: len(c.train_files) for c in classes},
              "holdout_images": {c.name: len(c.holdout_files) for c in classes},
              "time_s": round(figures["time_s"], 1), "device": str(dev), "precision": prec}
    if as_json:
        print_json(result)
    else:
        acc = ", ".join(f"{k} {v:.3f}" for k, v in figures["holdout_accuracy"].items())
        print(f"{out}: held-out accuracy {acc} ({sum(result['holdout_images'].values())} images), "
              f"trained on {sum(result['train_images'].values())} in {figures['time_s']:.0f} s")
