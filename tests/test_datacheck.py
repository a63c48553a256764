"""`munit data check` on folders seeded with every problem it reports, and its exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_domain, make_image
from munit_cli.cli import app
from munit_cli.datacheck import check_domains, check_image, domains_from_args, flatness

runner = CliRunner()


@pytest.fixture
def seeded(tmp_path) -> Path:
    """dogs/ holds one of every problem; cats/ is clean but for one file copied from dogs/."""
    root = tmp_path / "data"
    dogs, cats = root / "dogs", root / "cats"
    make_domain(dogs, 4, seed=1, size=(80, 72))
    make_domain(cats, 3, seed=2, size=(80, 72))
    make_image(dogs / "gray.png", size=(80, 80), seed=3, mode="L")
    make_image(dogs / "palette.png", size=(80, 80), seed=4, mode="P")
    make_image(dogs / "alpha.png", size=(80, 80), seed=5, mode="RGBA")
    make_image(dogs / "cmyk.jpg", size=(80, 80), seed=6, mode="CMYK", fmt="JPEG")
    Image.linear_gradient("L").resize((80, 80)).convert("I").point(lambda v: v * 200).convert("I;16").save(dogs / "deep.png")
    make_image(dogs / "small.png", size=(40, 30), seed=7)
    make_image(dogs / "tiny.png", size=(8, 8), seed=8)
    Image.new("RGB", (80, 80), (255, 255, 255)).save(dogs / "white.png")
    mostly = Image.new("RGB", (80, 80), (252, 252, 250))
    mostly.paste((20, 20, 20), (0, 0, 10, 10))  # 1.6% dark, the rest near white
    mostly.save(dogs / "mostly_white.png")
    Image.new("RGB", (80, 80), (30, 90, 40)).save(dogs / "flat.jpg", quality=95)
    full = make_image(tmp_path / "full.jpg", size=(120, 120), seed=9, fmt="JPEG").read_bytes()
    (dogs / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (dogs / "fake.png").write_text("not a png")
    (dogs / "notes.txt").write_text("hello")
    (dogs / "sub").mkdir()
    (dogs / "sub" / "labels.csv").write_text("a,b")
    shutil.copy(dogs / "img000.png", dogs / "sub" / "copy.png")
    shutil.copy(dogs / "img001.png", cats / "also_a_dog.png")
    return root


def _check(*args) -> tuple[int, dict, str]:
    r = runner.invoke(app, ["data", "check", *map(str, args), "--image-size", "64", "--json"])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, json.loads(r.stdout), r.stderr


def test_reports_every_problem(seeded):
    code, rep, _ = _check(seeded / "dogs", seeded / "cats")
    assert code == 0 and rep["ok"] and rep["problems"] == []
    dogs, cats = rep["domains"]
    assert (dogs["name"], cats["name"]) == ("dogs", "cats")
    unreadable = {Path(u["path"]).name: u["reason"] for u in dogs["unreadable"]}
    assert set(unreadable) == {"truncated.jpg", "fake.png", "tiny.png"}
    assert "truncated" in unreadable["truncated.jpg"] and "smaller than 16 px" in unreadable["tiny.png"]
    assert dogs["images"] == 4 + 12 + 1 and dogs["readable"] == dogs["images"] - 3
    assert sorted(Path(p).name for p in dogs["non_images"]) == ["labels.csv", "notes.txt"]
    assert {m: [Path(p).name for p in ps] for m, ps in dogs["converted_modes"].items()} == {
        "CMYK": ["cmyk.jpg"], "I;16": ["deep.png"], "L": ["gray.png"], "P": ["palette.png"], "RGBA": ["alpha.png"]}
    assert [(Path(s["path"]).name, s["size"]) for s in dogs["smaller_than_image_size"]] == [("small.png", [40, 30])]
    flat = {Path(f["path"]).name: f["reason"] for f in dogs["near_constant"]}
    assert set(flat) == {"white.png", "mostly_white.png", "flat.jpg"}
    assert "near-white" in flat["mostly_white.png"] and "uniform" in flat["flat.jpg"]
    groups = sorted(sorted((d["domain"], Path(d["path"]).name) for d in g) for g in rep["duplicates"])
    assert groups == [[("cats", "also_a_dog.png"), ("dogs", "img001.png")], [("dogs", "copy.png"), ("dogs", "img000.png")]]
    assert dogs["duplicates"] + cats["duplicates"] == 2
    assert cats["unreadable"] == [] and cats["converted_modes"] == {} and cats["near_constant"] == []
    warnings = " | ".join(rep["warnings"])
    for needle in ("3 unreadable", "2 non-image", "3 near-constant", "smaller than 64 px", "within a domain",
                   "more than one domain"):
        assert needle in warnings, needle
    assert "unbalanced" not in warnings


def test_table_output(seeded):
    r = runner.invoke(app, ["data", "check", str(seeded / "dogs"), str(seeded / "cats"), "--image-size", "64"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    for needle in ("readable images", "14 of 17", "near-constant", "CMYK 1", "truncated.jpg", "notes.txt",
                   "also_a_dog.png", "training can proceed"):
        assert needle in out, needle
    assert "warning: dogs: 3 unreadable image(s)" in r.stderr


def test_root_with_src_and_tgt_resolves_like_training(tmp_path):
    make_domain(tmp_path / "afhq" / "train" / "dog", 3, seed=1)
    make_domain(tmp_path / "afhq" / "train" / "cat", 2, seed=2)
    code, rep, _ = _check(tmp_path / "afhq", "--src", "dog", "--tgt", "cat")
    assert code == 0
    assert [(d["name"], d["folder"], d["readable"]) for d in rep["domains"]] == [
        ("dog", str(tmp_path / "afhq" / "train" / "dog"), 3), ("cat", str(tmp_path / "afhq" / "train" / "cat"), 2)]


def test_unbalanced_domains_warn(tmp_path):
    make_domain(tmp_path / "many", 11, seed=1, size=(24, 24))
    make_domain(tmp_path / "few", 1, seed=2, size=(24, 24))
    code, rep, _ = _check(tmp_path / "many", tmp_path / "few")
    assert code == 0 and rep["imbalance"] == 11.0
    assert any("very unbalanced" in w for w in rep["warnings"])
    code, rep, _ = _check(tmp_path / "many", tmp_path / "few", "--max-ratio", "20")
    assert not any("unbalanced" in w for w in rep["warnings"])


def test_empty_and_missing_domains_exit_1(tmp_path):
    make_domain(tmp_path / "dog", 2, seed=1)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    code, rep, err = _check(tmp_path / "dog", tmp_path / "cat", tmp_path / "wolf")
    assert code == 1 and not rep["ok"]
    assert len(rep["problems"]) == 2
    assert "error: training cannot proceed" in err and "'cat'" in err and "no image files (1 other files)" in err
    assert "wolf" in err and "does not exist" in err


def test_no_readable_image_exits_1(tmp_path):
    make_domain(tmp_path / "dog", 2, seed=1)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, rep, err = _check(tmp_path / "dog", tmp_path / "cat")
    assert code == 1 and "'cat'" in err and "no readable image" in err


def test_max_pixels_is_honoured(tmp_path):
    make_domain(tmp_path / "dog", 2, seed=1, size=(100, 100))
    make_domain(tmp_path / "cat", 2, seed=2, size=(40, 40))
    code, rep, err = _check(tmp_path / "dog", tmp_path / "cat", "--max-pixels", "5000")
    assert code == 1 and "no readable image" in err
    assert all("--max-pixels" in u["reason"] and "5,000" in u["reason"] for u in rep["domains"][0]["unreadable"])
    assert _check(tmp_path / "dog", tmp_path / "cat", "--max-pixels", "10000")[0] == 0


def test_usage_errors_exit_2(tmp_path):
    make_domain(tmp_path / "dog", 1, seed=1)
    for args in ([], [str(tmp_path), "--src", "dog"], [str(tmp_path), str(tmp_path), "--src", "dog", "--tgt", "cat"],
                 [str(tmp_path / "dog"), "--image-size", "0"]):
        r = runner.invoke(app, ["data", "check", *args])
        assert r.exit_code == 2, (args, r.output)


def test_missing_root_exit_1(tmp_path):
    r = runner.invoke(app, ["data", "check", str(tmp_path / "nope"), "--src", "dog", "--tgt", "cat"])
    assert r.exit_code == 1 and "data root" in r.stderr and "nope" in r.stderr


def test_core_helpers(tmp_path):
    assert flatness(Image.new("RGB", (300, 200), (9, 9, 9))).startswith("uniform")
    assert flatness(Image.open(make_image(tmp_path / "x.png", size=(300, 200))).convert("RGB")) is None
    c = check_image(make_image(tmp_path / "y.jpg", size=(640, 480), fmt="JPEG"))
    assert c.error is None and c.size == (640, 480) and c.mode == "RGB" and len(c.digest) == 32
    seen = []
    doms = domains_from_args([str(tmp_path)], None, None)
    rep = check_domains(doms, on_start=seen.append, on_file=lambda c: seen.append(c.path.name), workers=2)
    assert seen[0] == 2 and sorted(seen[1:]) == ["x.png", "y.jpg"]
    assert rep.problems() == []


# --- train's flags and roots holding domain folders ------------------------------------------

def test_one_root_with_two_domain_folders_checks_each(seeded):
    code, rep, err = _check(seeded)
    assert code == 0 and [d["name"] for d in rep["domains"]] == ["cats", "dogs"]
    assert [d["readable"] for d in rep["domains"]] == [4, 14]  # not one domain of 18 images
    assert rep["train"] == ["--data", str(seeded), "--src", "cats", "--tgt", "dogs"]
    assert "holds 2 domain folders (cats, dogs)" in err
    r = runner.invoke(app, ["data", "check", str(seeded), "--image-size", "64"])
    assert r.exit_code == 0 and f"training can proceed: munit train --data {seeded} --src cats --tgt dogs" in r.stdout


def test_data_flag_like_train_and_afhq_root_alone(tmp_path):
    afhq = tmp_path / "afhq"
    for i, name in enumerate(("cat", "dog", "wild")):
        make_domain(afhq / "train" / name, 2 + i, seed=i)
    make_domain(afhq / "val" / "cat", 1, seed=9)
    code, rep, _ = _check("--data", afhq, "--src", "dog", "--tgt", "cat")
    assert code == 0 and [(d["name"], d["readable"]) for d in rep["domains"]] == [("dog", 3), ("cat", 2)]
    assert rep["train"] == ["--data", str(afhq), "--src", "dog", "--tgt", "cat"]
    assert _check(afhq, "--src", "dog", "--tgt", "cat")[1]["domains"] == rep["domains"]  # the positional form too
    code, rep, _ = _check("--data", afhq)
    assert code == 0 and [d["name"] for d in rep["domains"]] == ["cat", "dog", "wild"]
    r = runner.invoke(app, ["data", "check", str(afhq), "--image-size", "64"])
    assert r.exit_code == 0 and "any two of the 3 domains, e.g. munit train --data" in r.stdout


def test_single_domain_folder_says_training_needs_two(seeded):
    r = runner.invoke(app, ["data", "check", str(seeded / "dogs"), "--image-size", "64"])
    assert r.exit_code == 0 and "training can proceed" not in r.stdout and "needs a second one" in r.stdout
    assert _check(seeded / "dogs")[1]["train"] is None


def test_data_flag_usage_errors(tmp_path):
    make_domain(tmp_path / "dog", 1, seed=1)
    r = runner.invoke(app, ["data", "check", str(tmp_path), "--data", str(tmp_path), "--src", "dog", "--tgt", "dog"])
    assert r.exit_code == 2 and "once" in r.stderr
    r = runner.invoke(app, ["data", "check", "--data", str(tmp_path / "nope"), "--src", "dog", "--tgt", "cat"])
    assert r.exit_code == 1 and "data root" in r.stderr
    r = runner.invoke(app, ["data", "check", "--data", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "data root" in r.stderr
