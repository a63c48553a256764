"""`munit data ...`: the `check` command reporting what training will meet in the domain folders."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from munit_cli.datacheck import DEFAULT_IMAGE_SIZE, DEFAULT_MAX_RATIO, Report, check_domains, select_domains
from munit_cli.errors import MunitError
from munit_cli.images import DEFAULT_MAX_PIXELS
from munit_cli.ui import err_console, friendly, print_json, progress, warn

data_app = typer.Typer(help="Inspect training data.", no_args_is_help=True)
EXAMPLES = 5  # paths listed per finding in the table view (--json lists all)


def _examples(con: Console, title: str, lines: list[str]) -> None:
    if not lines:
        return
    con.print(f"{title}:")
    for line in lines[:EXAMPLES]:
        con.print(f"  {line}")
    if len(lines) > EXAMPLES:
        con.print(f"  ... and {len(lines) - EXAMPLES} more (--json lists all)")


def _print_table(report: Report) -> None:
    """One column per domain, one row per finding (fits a narrow terminal for two domains)."""
    con = Console(soft_wrap=True, highlight=False, markup=False)
    t = Table()
    t.add_column("")
    for d in report.domains:
        t.add_column(d.name, justify="right")

    def row(label: str, fn) -> None:
        t.add_row(label, *("-" if d.problem else fn(d) for d in report.domains))

    t.add_row("folder", *(str(d.folder or "missing") for d in report.domains))
    row("readable images", lambda d: f"{len(d.readable)} of {len(d.images)}")
    row("unreadable", lambda d: str(len(d.unreadable)))
    row("non-image files", lambda d: str(len(d.non_images)))
    row("to convert", lambda d: "\n".join(f"{m} {len(ps)}" for m, ps in sorted(d.converted().items())) or "0")
    row(f"< {report.image_size} px", lambda d: str(len(d.smaller_than(report.image_size))))
    row("near-constant", lambda d: str(len(d.near_constant())))
    row("duplicates", lambda d: str(report.duplicates_in(d)))
    con.print(t)
    for d in report.domains:
        _examples(con, f"{d.name}: unreadable", [c.error or "" for c in d.unreadable])
        _examples(con, f"{d.name}: non-image files (ignored)", [str(p) for p in d.non_images])
        _examples(con, f"{d.name}: near-constant", [f"{c.path}: {c.flat}" for c in d.near_constant()])
        _examples(con, f"{d.name}: smaller than {report.image_size} px (upscaled)",
                  [f"{c.path}: {c.size[0]}x{c.size[1]}" for c in d.smaller_than(report.image_size)])
    _examples(con, "identical files", [" = ".join(str(p) for _, p in g) for g in report.duplicates])


def _scan(domains, image_size: int, max_pixels: int, max_ratio: float, workers: int | None) -> Report:
    with progress() as bar:
        task = bar.add_task("checking", total=None)
        return check_domains(domains, image_size, max_pixels, max_ratio, workers,
                             on_start=lambda n: bar.update(task, total=n), on_file=lambda c: bar.advance(task))


@data_app.command("check")
@friendly
def check(
    paths: Optional[list[str]] = typer.Argument(None, metavar="ROOT_OR_FOLDERS", help="Domain folders; or one data ROOT (its domain folders ROOT/NAME or ROOT/train/NAME are checked each, or with --src/--tgt)."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="ROOT", help="Data root holding the domain folders, as in train."),
    src: Optional[str] = typer.Option(None, "--src", metavar="NAME", help="Domain a under ROOT (ROOT/NAME or ROOT/train/NAME), or a folder, as in train."),
    tgt: Optional[str] = typer.Option(None, "--tgt", metavar="NAME", help="Domain b, like --src."),
    image_size: int = typer.Option(DEFAULT_IMAGE_SIZE, "--image-size", min=1, metavar="PX", help="Training crop size; smaller images are reported."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, metavar="N", help="Larger images count as unreadable, as in train (0: no limit)."),
    max_ratio: float = typer.Option(DEFAULT_MAX_RATIO, "--max-ratio", min=1.0, metavar="X", help="Warn when one domain has this many times more images."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, metavar="N", help="Threads decoding images (default: 2 x CPUs, at most 8)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object instead of a table."),
) -> None:
    """Check domain folders before a long training run.

    Reports per domain: images, unreadable or truncated files, non-image files, modes that will be converted to RGB, images smaller than the training size, near-constant images, identical files within and across domains, and very unbalanced domains. Exits 1 when training cannot proceed (missing or empty domain, no readable image), else 0 and names the `munit train` pair. A ROOT given alone that holds no images itself but two or more folders of them (ROOT/NAME, or ROOT/train/NAME) is checked per domain folder.

    Examples:

      munit data check data/dogs data/cats

      munit data check --data afhq --src dog --tgt cat --image-size 128 --json

      munit data check afhq
    """
    selection = select_domains(paths or [], src, tgt, data)
    if selection.note():
        err_console.print(selection.note(), highlight=False, markup=False, soft_wrap=True)
    report = _scan(selection.domains, image_size, max_pixels, max_ratio, workers)
    if as_json:
        print_json({**report.to_dict(), "train": selection.train_args()})
    else:
        _print_table(report)
        for line in report.warnings():
            warn(line)
    problems = report.problems()
    if problems:
        raise MunitError("training cannot proceed: " + "; ".join(problems))
    if not as_json:
        print(selection.verdict())
