"""Inputs of a file run and the names of their outputs: unique, stable across reruns.

The rule (README "Output names"): an input mirrors its path relative to the folder (or glob
root) it was found under, or its own folder for a file given by name, without its extension:
`photos/sub/x.jpg` -> `OUTDIR/sub/x_00.png`. Where two inputs would still share a name:
  1. inputs found under different folders are mirrored relative to those folders' common
     parent (`a/x.jpg`, `b/x.jpg` -> `a/x_00.png`, `b/x_00.png`);
  2. inputs in the same folder keep their extension (`x.jpg`, `x.png` -> `x.jpg_00.png`,
     `x.png_00.png`).
Names are compared case-insensitively, so they stay distinct on any disk.
"""

from __future__ import annotations

import glob
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from munit_cli.errors import MunitError
from munit_cli.images import discover_images


@dataclass
class Job:
    path: Path  # input image
    stem: Path  # output name without suffix, relative to the output folder


@dataclass
class _Input:
    """An input while its output name is being chosen."""

    path: Path  # as discovered (shown to the user)
    anchor: str  # absolute folder the output name mirrors the input's path from
    keep_ext: bool = False

    def stem(self) -> Path:
        rel = Path(os.path.relpath(os.path.abspath(self.path), self.anchor))
        return rel if self.keep_ext else rel.with_suffix("")

    def key(self) -> tuple[str, ...]:
        return tuple(part.casefold() for part in self.stem().parts)


def glob_root(pattern: str) -> Path:
    """The folder a glob pattern searches from: its leading parts without wildcards."""
    static = list(itertools.takewhile(lambda part: not glob.has_magic(part), Path(pattern).parts))
    return Path(*static) if static else Path(".")


def _anchor(item: str) -> str | None:
    """The absolute folder names mirror from for everything `item` finds (None: a file given
    by name, which mirrors from its own folder)."""
    root = Path(item)
    if root.is_file():
        return None
    return os.path.abspath(root if root.is_dir() else glob_root(item))


def _common_folder(group: list[_Input]) -> str:
    try:
        return os.path.commonpath([i.anchor for i in group])
    except ValueError:  # different drives (Windows): no common parent folder
        raise MunitError(f"inputs {str(group[0].path)!r} and {str(group[1].path)!r} would write the same outputs and "
                         "share no folder: translate them into different --outdir folders")


def unique_names(inputs: list[_Input]) -> None:
    """Apply the module rule until every output name is unique. Each round only moves an
    anchor up or keeps an extension, so it ends; an exact clash left over is refused."""
    while True:
        groups: dict[tuple[str, ...], list[_Input]] = {}
        for i in inputs:
            groups.setdefault(i.key(), []).append(i)
        changed = False
        for group in (g for g in groups.values() if len(g) > 1):
            if len({i.anchor for i in group}) > 1:
                common = _common_folder(group)
                for i in group:
                    i.anchor = common
                changed = True
            elif not all(i.keep_ext for i in group):
                for i in group:
                    i.keep_ext = True
                changed = True
            elif len({i.stem() for i in group}) < len(group):  # never overwrite one input's outputs with another's
                a, b = group[:2]
                raise MunitError(f"inputs {str(a.path)!r} and {str(b.path)!r} would write the same outputs "
                                 f"({a.stem()}_00 ...): rename one or translate them into different --outdir folders")
            # else: names differing only in case, on a case-sensitive disk: distinct as they are
        if not changed:
            return


def plan_jobs(items: Iterable[str], exclude: Path | None = None) -> list[Job]:
    """Discover input images (files, folders, globs) and name their outputs (module rule).
    Images found under `exclude` (the output folder) by a folder or glob are left out, so a
    rerun does not translate its own outputs; duplicates count once."""
    inputs: list[_Input] = []
    seen: set[Path] = set()
    exclude = exclude.resolve() if exclude is not None else None
    for item in items:
        anchor = _anchor(item)
        for f in discover_images([item]):
            real = f.resolve()
            if real in seen or (exclude is not None and anchor is not None and real.is_relative_to(exclude)):
                continue
            seen.add(real)
            inputs.append(_Input(f, anchor or os.path.abspath(f.parent)))
    if not inputs:
        raise MunitError("no input images to translate (all inputs are inside the output folder?)")
    unique_names(inputs)
    return [Job(i.path, i.stem()) for i in inputs]


def output_path(outdir: Path, stem: Path, k: int | None, ext: str) -> Path:
    """`{stem}_{k:02d}.{ext}` for style k, `{stem}_grid.{ext}` for the contact sheet. The part
    after the last `_` is a style number or `grid`, so distinct stems never share an output."""
    return outdir / stem.parent / f"{stem.name}_{'grid' if k is None else f'{k:02d}'}.{ext}"
