"""The outputs of a file run: which files each input still needs (the rest are skipped, so a
rerun resumes), the events reported for them, and an ordered background writer."""

from __future__ import annotations

import collections
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from munit_cli.atomic import remove_stale_temps
from munit_cli.images import save_image
from munit_cli.naming import Job, output_path

# Images waiting in the writer queue at most. Each holds a decoded picture (up to H*W*3 bytes),
# so the bound caps memory when encoding/disk is slower than decoding; it is large enough that
# the model never waits on the writer threads during a burst of small outputs.
MAX_PENDING_WRITES = 64


@dataclass
class Event:
    """One thing translate_files did, reported in input order."""

    kind: str  # "output" (a file was written) | "done" (an input finished) | "failed" (an input was skipped)
    # | "skipped" (an input left out on purpose, e.g. translate --heads on a photo without a head)
    input: Path
    output: Path | None = None
    style_index: int | None = None  # None for a grid
    style_source: str | None = None
    seed: int | None = None
    message: str = ""  # "failed": the one-line reason


@dataclass
class Summary:
    inputs: int
    written: int = 0
    skipped: int = 0  # existing outputs left as they were
    failed: list[tuple[Path, str]] = field(default_factory=list)
    passed: list[tuple[Path, str]] = field(default_factory=list)  # inputs left out on purpose, and why


@dataclass
class WorkItem:
    """One input with the outputs it still needs."""

    index: int  # input number (seeds --per-image codes)
    job: Job
    outputs: dict[int, Path]  # style index -> output file still to write
    grid: Path | None  # contact sheet still to write (it needs every style decoded)

    def styles_to_decode(self, n: int) -> list[int]:
        return list(range(n)) if self.grid is not None else list(self.outputs)


@dataclass
class OutputPlan:
    work: list[WorkItem]  # inputs with something to write, in input order
    complete: list[Job]  # inputs whose outputs all exist already
    skipped: int  # existing outputs that will be left alone
    names: dict[Path, set[str]]  # folder -> every output name of the run

    def sweep_stale_temps(self) -> None:
        """Remove temporary files a killed run left for this run's outputs (and no others)."""
        for folder, names in self.names.items():
            if folder.is_dir():
                remove_stale_temps(folder, names)


def plan_outputs(jobs: list[Job], n: int, outdir: Path, ext: str, *, grid: bool = False,
                 overwrite: bool = False) -> OutputPlan:
    """What each job writes with `n` styles (and a grid): missing files, or all with `overwrite`."""
    plan = OutputPlan([], [], 0, {})
    for index, job in enumerate(jobs):
        paths: dict[int | None, Path] = {k: output_path(outdir, job.stem, k, ext) for k in [*range(n), *([None] if grid else [])]}
        for p in paths.values():
            plan.names.setdefault(p.parent, set()).add(p.name)
        todo = {k: p for k, p in paths.items() if overwrite or not p.exists()}
        plan.skipped += len(paths) - len(todo)
        grid_path = todo.pop(None, None)
        if todo or grid_path is not None:
            plan.work.append(WorkItem(index, job, todo, grid_path))
        else:
            plan.complete.append(job)
    return plan


def _render_and_save(render: Callable[[], Image.Image], path: Path) -> None:
    save_image(render(), path)


class OrderedWriter:
    """Writes images on background threads and reports every event in submission order, an
    output's only once its file is in place; `written` counts finished writes."""

    def __init__(self, workers: int, report: Callable[[Event], None]):
        self.report, self.written = report, 0
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="munit-write")
        self._pending: collections.deque[tuple[Future | None, Event]] = collections.deque()

    def write(self, render: Callable[[], Image.Image], path: Path, event: Event) -> None:
        """Queue `render()` (made on a writer thread) to be saved at `path`, then `event`."""
        self._pending.append((self._pool.submit(_render_and_save, render, path), event))
        self.flush()

    def note(self, event: Event) -> None:
        """Queue an event that writes nothing ("done", "failed"), reported after earlier ones."""
        self._pending.append((None, event))
        self.flush()

    def flush(self, block: bool = False) -> None:
        """Report the finished head of the queue; wait for writes while more than
        MAX_PENDING_WRITES are queued, or for all of them with `block`."""
        while self._pending:
            fut, event = self._pending[0]
            if not (block or len(self._pending) > MAX_PENDING_WRITES or fut is None or fut.done()):
                return
            self._pending.popleft()
            if fut is not None:
                fut.result()  # re-raises a failed write (e.g. disk full)
                self.written += 1
            self.report(event)

    def __enter__(self) -> OrderedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.flush(block=True)
        finally:
            self._pool.shutdown(wait=True)
