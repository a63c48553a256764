"""Output names of file runs (munit_cli/naming.py): unique, stable, documented; the output plan
and the ordered writer behind `munit translate`."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_image
from munit_cli import outputs
from munit_cli.cli import app
from munit_cli.errors import MunitError
from munit_cli.naming import glob_root, output_path, plan_jobs
from munit_cli.outputs import Event, OrderedWriter, plan_outputs

runner = CliRunner()


def touch(path: Path) -> Path:
    """An empty file: discovery and naming look at names only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def names(items, **kw) -> list[tuple[str, str]]:
    return [(j.path.name, j.stem.as_posix()) for j in plan_jobs([str(i) for i in items], **kw)]


# --- acceptance ---------------------------------------------------------------------------

def test_folder_with_clashing_stems_translates_everything_and_resumes(tmp_path, tiny_gen_ckpt):
    folder, out = tmp_path / "pets", tmp_path / "out"
    make_image(folder / "x.jpg", seed=1, fmt="JPEG")
    make_image(folder / "x.png", seed=2)
    make_image(folder / "sub" / "x.jpg", seed=3, fmt="JPEG")
    args = ["translate", str(folder), "-m", str(tiny_gen_ckpt), "-n", "2", "--grid", "--outdir", str(out),
            "--device", "cpu", "--precision", "fp32", "--workers", "1"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    got = [(Path(x["input"]).relative_to(folder).as_posix(), Path(x["output"]).relative_to(out).as_posix())
           for x in recs]
    assert got == [("sub/x.jpg", f"sub/x_{k}.png") for k in ("00", "01", "grid")] + \
                  [("x.jpg", f"x.jpg_{k}.png") for k in ("00", "01", "grid")] + \
                  [("x.png", f"x.png_{k}.png") for k in ("00", "01", "grid")]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(o for _, o in got)
    # three different inputs: three different output sets, none written over another
    assert len({(out / o).read_bytes() for _, o in got if o.endswith("_00.png")}) == 3
    r = runner.invoke(app, args)  # the same command again: same names, so everything is skipped
    assert r.exit_code == 0 and r.stdout == "" and "skipped 9 existing" in r.stderr


# --- the naming rule ----------------------------------------------------------------------

def test_unique_names_keep_the_plain_layout_where_nothing_clashes(tmp_path):
    for p in ("d/a.png", "d/s/b.jpg", "e/c.png"):
        touch(tmp_path / p)
    assert names([tmp_path / "d", tmp_path / "e" / "c.png"]) == [("a.png", "a"), ("b.jpg", "s/b"), ("c.png", "c")]


def test_same_folder_same_stem_keeps_the_extension_case_insensitively(tmp_path):
    for p in ("d/x.jpg", "d/X.png", "d/y.png", "d/sub/x.jpg"):
        touch(tmp_path / p)
    assert names([tmp_path / "d"]) == [("X.png", "X.png"), ("x.jpg", "sub/x"), ("x.jpg", "x.jpg"), ("y.png", "y")]


def test_files_and_folders_from_different_places_mirror_their_common_parent(tmp_path):
    touch(tmp_path / "a" / "x.jpg")
    touch(tmp_path / "b" / "x.jpg")
    touch(tmp_path / "c" / "y.jpg")
    assert names([tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg", tmp_path / "c" / "y.jpg"]) == [
        ("x.jpg", "a/x"), ("x.jpg", "b/x"), ("y.jpg", "y")]
    touch(tmp_path / "d1" / "x.png")
    touch(tmp_path / "d2" / "x.png")
    touch(tmp_path / "d2" / "x.bmp")
    assert names([tmp_path / "d1", tmp_path / "d2"]) == [("x.png", "d1/x"), ("x.bmp", "d2/x.bmp"), ("x.png", "d2/x.png")]


def test_glob_inputs_mirror_the_glob_root(tmp_path, monkeypatch):
    assert glob_root("shelter/**/*.jpg") == Path("shelter") and glob_root("*.png") == Path(".")
    assert glob_root("/data/[ab]/x.png") == Path("/data")
    for p in ("shelter/cats/x.jpg", "shelter/dogs/x.jpg", "shelter/y.jpg"):
        touch(tmp_path / p)
    monkeypatch.chdir(tmp_path)
    assert names(["shelter/**/*.jpg"]) == [("x.jpg", "cats/x"), ("x.jpg", "dogs/x"), ("y.jpg", "y")]


def test_case_only_differences_and_cascades_stay_distinct(tmp_path):
    for p in ("d/P.png", "d/p.png", "d/x.jpg", "d/x.png", "d/x.jpg.png"):
        touch(tmp_path / p)
    got = dict((n, s) for n, s in names([tmp_path / "d"]))
    assert got == {"P.png": "P.png", "p.png": "p.png", "x.jpg": "x.jpg", "x.png": "x.png", "x.jpg.png": "x.jpg.png"}


def test_names_are_unique_and_stable_on_random_trees(tmp_path):
    rng = random.Random(0)
    for trial in range(20):
        root = tmp_path / f"t{trial}"
        for _ in range(12):
            parts = [rng.choice(["a", "b", "A"]) for _ in range(rng.randrange(3))]
            touch(root.joinpath(*parts, rng.choice(["x", "X", "y", "x.jpg"]) + rng.choice([".jpg", ".png", ".PNG"])))
        items = [root] + [str(p) for p in sorted(root.rglob("*"))[:3] if p.is_file()]
        first = plan_jobs(items)
        outs = [output_path(Path("o"), j.stem, 0, "png").as_posix() for j in first]
        assert len(set(outs)) == len(first), outs
        if len({j.path.as_posix().casefold() for j in first}) == len(first):  # distinct on a case-insensitive disk too
            assert len({o.casefold() for o in outs}) == len(first), outs
        assert [(j.path, j.stem) for j in plan_jobs(items)] == [(j.path, j.stem) for j in first]


def test_output_folder_is_left_out_and_an_empty_run_is_refused(tmp_path):
    touch(tmp_path / "d" / "a.png")
    touch(tmp_path / "d" / "out" / "a_00.png")
    assert names([tmp_path / "d"], exclude=tmp_path / "d" / "out") == [("a.png", "a")]
    with pytest.raises(MunitError, match="no input images"):
        plan_jobs([str(tmp_path / "d" / "out")], exclude=tmp_path / "d" / "out")


# --- output plan and ordered writer -------------------------------------------------------

def test_plan_outputs_skips_what_exists(tmp_path):
    touch(tmp_path / "in" / "a.png")
    touch(tmp_path / "in" / "b.png")
    jobs = plan_jobs([str(tmp_path / "in")])
    touch(tmp_path / "o" / "a_00.png")
    touch(tmp_path / "o" / "a_01.png")
    touch(tmp_path / "o" / "a_grid.png")
    touch(tmp_path / "o" / "b_01.png")
    plan = plan_outputs(jobs, 2, tmp_path / "o", "png", grid=True)
    assert [j.path.name for j in plan.complete] == ["a.png"] and plan.skipped == 4
    (item,) = plan.work
    assert item.index == 1 and item.outputs == {0: tmp_path / "o" / "b_00.png"} and item.grid == tmp_path / "o" / "b_grid.png"
    assert item.styles_to_decode(2) == [0, 1]  # the grid needs every style
    again = plan_outputs(jobs, 2, tmp_path / "o", "png", overwrite=True)
    assert len(again.work) == 2 and again.skipped == 0 and again.work[1].grid is None
    assert plan.names[tmp_path / "o"] >= {"a_00.png", "b_grid.png"}


def test_ordered_writer_reports_in_order_and_bounds_the_queue(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "MAX_PENDING_WRITES", 2)
    events, release = [], threading.Event()
    slow = {"first": True}

    def save(render, path):
        if slow.pop("first", False):
            release.wait(5)  # the first write is slow: later ones must wait to be reported
        path.write_text(render())

    monkeypatch.setattr(outputs, "_render_and_save", save)
    with OrderedWriter(2, events.append) as w:
        w.write(lambda: "0", tmp_path / "0", Event("output", Path("a"), tmp_path / "0"))
        w.write(lambda: "1", tmp_path / "1", Event("output", Path("a"), tmp_path / "1"))
        time.sleep(0.05)
        assert events == []  # write 1 is done, but write 0 (the head) is not: nothing reported out of order
        threading.Timer(0.2, release.set).start()
        start = time.perf_counter()
        w.note(Event("done", Path("a")))  # a third queued item, over the bound: waits for the head
        assert time.perf_counter() - start > 0.15 and [e.kind for e in events] == ["output", "output", "done"]
        w.write(lambda: "2", tmp_path / "2", Event("output", Path("b"), tmp_path / "2"))
    assert [e.kind for e in events] == ["output", "output", "done", "output"] and w.written == 3
    assert [e.output.name for e in events if e.output] == ["0", "1", "2"]
    assert [(tmp_path / n).read_text() for n in "012"] == ["0", "1", "2"]


def test_ordered_writer_raises_a_failed_write(tmp_path, monkeypatch):
    def full_disk(render, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs, "_render_and_save", full_disk)
    events = []
    with pytest.raises(OSError, match="No space left"):
        with OrderedWriter(1, events.append) as w:
            w.write(lambda: None, tmp_path / "x.png", Event("output", Path("a")))
    assert events == []  # a failed write is never reported as written
