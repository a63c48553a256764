"""`munit heads`: the head crop of every photo into a folder, with a manifest (source, box,
confidence, output per photo) that makes a rerun skip what is done."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from munit_cli import __version__
from munit_cli.atomic import atomic_write_bytes, remove_stale_temps
from munit_cli.heads.boxes import to_int
from munit_cli.heads.compose import crop_window, cut
from munit_cli.heads.detector import Detector
from munit_cli.images import DEFAULT_MAX_PIXELS, ImageError, load_rgb, save_image
from munit_cli.inference import prefetch
from munit_cli.naming import Job

MANIFEST = "manifest.jsonl"  # one JSON object per photo: source, box, confidence, output, window
OPTIONS = "options.json"  # the options of the last run


@dataclass
class Outcome:
    """What happened to one photo."""

    source: Path
    status: str  # "written" | "existing" (output kept from an earlier run) | "no_head" | "failed"
    box: tuple[int, int, int, int] | None = None  # head window in the photo's pixels (heads/ framing)
    confidence: float | None = None
    output: Path | None = None
    window: tuple[int, int, int, int] | None = None  # the square cut (after --margin and --fit)
    message: str = ""  # failed: the one-line reason

    def line(self) -> dict:
        """The `--json` line: exactly source, box, confidence, output."""
        return {"source": str(self.source), "box": list(self.box) if self.box else None,
                "confidence": None if self.confidence is None else round(self.confidence, 4),
                "output": str(self.output) if self.output else None}

    def entry(self) -> dict:
        """The manifest line: the --json line plus the crop window."""
        return {**self.line(), "window": list(self.window) if self.window else None}


def read_manifest(folder: Path) -> dict[str, dict]:
    """The entries of an earlier run's manifest by source (unreadable lines are ignored)."""
    entries = {}
    try:
        lines = (folder / MANIFEST).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return entries
    for line in lines:
        try:
            e = json.loads(line)
            entries[str(e["source"])] = e
        except (ValueError, KeyError, TypeError):
            continue
    return entries


def _from_entry(e: dict, source: Path) -> Outcome:
    box = tuple(e["box"]) if e.get("box") else None
    window = tuple(e["window"]) if e.get("window") else None
    return Outcome(source, "existing", box, e.get("confidence"), Path(e["output"]) if e.get("output") else None, window)


def output_for(out: Path, job: Job, ext: str) -> Path:
    return out / job.stem.parent / f"{job.stem.name}.{ext}"


def crop_heads(det: Detector, jobs: list[Job], out: Path, *, size: int | None, margin: float = 1.0,
               fit: str = "inside", ext: str = "jpg", overwrite: bool = False, workers: int = 2,
               max_pixels: int = DEFAULT_MAX_PIXELS, options: dict | None = None,
               report: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Find each photo's head, write its square crop (size x size) to out/{stem}.{ext}, and
    write the manifest (entries of earlier runs for other photos are kept). A photo whose crop
    and manifest entry exist is skipped without decoding, unless `overwrite`."""
    report = report or (lambda o: None)
    old = read_manifest(out)
    dests = [output_for(out, j, ext) for j in jobs]
    for folder in {d.parent for d in dests}:
        if folder.is_dir():
            remove_stale_temps(folder, {d.name for d in dests if d.parent == folder})

    def done(k: int) -> bool:
        e = old.get(str(jobs[k].path))
        return not overwrite and e is not None and e.get("output") == str(dests[k]) and dests[k].exists()

    def load(k: int):
        return None if done(k) else load_rgb(jobs[k].path, max_pixels=max_pixels)

    outcomes: list[Outcome] = []
    try:
        for k, img in prefetch(load, list(range(len(jobs))), workers):
            src, dest = jobs[k].path, dests[k]
            if img is None:
                o = _from_entry(old[str(src)], src)
            elif isinstance(img, ImageError):
                o = Outcome(src, "failed", message=str(img))
            else:
                d = det.detect(img)
                if not d.found:
                    o = Outcome(src, "no_head", confidence=d.confidence)
                else:
                    window = crop_window(d.box, img.size[0], img.size[1], margin, fit)
                    status = "existing" if dest.exists() and not overwrite else "written"
                    if status == "written":
                        save_image(cut(img, window, size), dest)
                    o = Outcome(src, status, to_int(d.box), d.confidence, dest, window)
            outcomes.append(o)
            report(o)
    finally:
        _write_manifest(out, old, outcomes, options or {})
    return outcomes


def _write_manifest(out: Path, old: dict[str, dict], outcomes: list[Outcome], options: dict) -> None:
    entries = dict(old)
    for o in outcomes:
        if o.status != "failed":
            entries[str(o.source)] = o.entry()
    lines = [json.dumps(entries[k]) for k in sorted(entries)]
    atomic_write_bytes(out / MANIFEST, ("\n".join(lines) + "\n" if lines else "").encode())
    atomic_write_bytes(out / OPTIONS, (json.dumps({**options, "munit_version": __version__}, indent=2) + "\n").encode())
