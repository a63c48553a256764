"""Head finding (issue 18) through the CLI: `munit heads` on odd folders and its --json lines,
`translate --heads` paste-back with every style option (stub detector with a known box),
the no-head path, wrong detector files, and `munit train-detector` / `eval-detector`."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_image
from munit_cli import weights
from munit_cli.checkpoint import read_header, save_generators
from munit_cli.cli import app
from munit_cli.commands import translate as translate_cmd
from munit_cli.heads.detector import Detection
from munit_cli.models import build_generator
from test_heads import TINY, disc_photos, random_detector

runner = CliRunner()
JSON_KEYS = ["source", "box", "confidence", "output"]


def heads(*args):
    return runner.invoke(app, ["heads", *map(str, args), "--device", "cpu"])


def err_lines(r) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def det(tmp_path):
    return random_detector(tmp_path / "det.safetensors", recipe=TINY)


@pytest.fixture
def odd_folder(tmp_path):
    """Three RGB photos, a grayscale and a CMYK JPEG (good); a tiny, a broken and a truncated file (bad)."""
    f = tmp_path / "photos"
    for i in range(3):
        make_image(f / f"rgb{i}.png", size=(90, 70), seed=i)
    make_image(f / "gray.jpg", size=(80, 80), seed=7, mode="L")
    make_image(f / "cmyk.jpg", size=(70, 90), seed=8, mode="CMYK")
    make_image(f / "tiny.png", size=(8, 8), seed=9)
    (f / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    good = (f / "rgb0.png").read_bytes()
    make_image(f / "trunc.jpg", size=(90, 70), seed=3)
    (f / "trunc.jpg").write_bytes((f / "trunc.jpg").read_bytes()[:60])
    return f, ["rgb0", "rgb1", "rgb2", "gray", "cmyk"], ["tiny.png", "broken.jpg", "trunc.jpg"], good


# --- munit heads ----------------------------------------------------------------------------------

def test_heads_on_odd_folder_does_every_good_file_and_names_each_bad_one(tmp_path, det, odd_folder):
    folder, good, bad, _ = odd_folder
    out = tmp_path / "crops"
    r = heads(folder, "--out", out, "--detector", det, "--threshold", 0, "--size", 48, "--json")
    assert r.exit_code == 1, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(os.path.basename(x["source"]).split(".")[0] for x in lines) == sorted(good)
    for x in lines:
        assert list(x) == JSON_KEYS
        assert len(x["box"]) == 4 and all(isinstance(v, int) for v in x["box"])
        assert x["box"][2] - x["box"][0] == x["box"][3] - x["box"][1] > 0  # a square
        assert 0 <= x["confidence"] <= 1
        assert Image.open(x["output"]).size == (48, 48) and Image.open(x["output"]).mode == "RGB"
    for name in bad:
        assert name in r.stderr
    assert len(err_lines(r)) == 1 and "3 of 8 file(s) could not be read" in r.stderr
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 5 and all(m["window"] for m in manifest)
    assert json.loads((out / "options.json").read_text())["size"] == 48


def test_heads_rerun_skips_what_exists(tmp_path, det):
    folder = tmp_path / "photos"
    for i in range(3):
        make_image(folder / "sub" / f"p{i}.png", size=(90, 70), seed=i)
    out = tmp_path / "crops"
    r1 = heads(folder, "--out", out, "--detector", det, "--threshold", 0)
    assert r1.exit_code == 0, r1.output
    assert r1.stdout.split() == [str(out / "sub" / f"p{i}.jpg") for i in range(3)]  # mirrors sub-folders
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    r2 = heads(folder, "--out", out, "--detector", det, "--threshold", 0, "--json")
    assert r2.exit_code == 0 and "3 existing kept" in r2.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == stamps
    assert [json.loads(line)["output"] for line in r2.stdout.splitlines()] == [str(out / "sub" / f"p{i}.jpg") for i in range(3)]


def test_heads_no_head_path(tmp_path, det):
    folder = tmp_path / "photos"
    for i in range(7):
        make_image(folder / f"p{i}.png", size=(60, 60), seed=i)
    out = tmp_path / "crops"
    r = heads(folder, "--out", out, "--detector", det, "--threshold", 1, "--json")
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 7 and all(x["box"] is None and x["output"] is None for x in lines)
    assert "7 without a head" in r.stderr and "no head found in" in r.stderr and "and 2 more" in r.stderr
    assert not list(out.rglob("*.jpg"))


def test_heads_wrong_detector_and_bad_usage(tmp_path, tiny_gen_ckpt):
    make_image(tmp_path / "p.png", size=(60, 60))
    r = heads(tmp_path / "p.png", "--out", tmp_path / "o", "--detector", tiny_gen_ckpt)
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == err_lines(r)
    assert len(err_lines(r)) == 1 and "is a generator file, not a head detector" in r.stderr
    r = heads(tmp_path / "p.png", "--out", tmp_path / "o", "--detector", tmp_path / "missing.safetensors")
    assert r.exit_code == 1 and "does not exist" in r.stderr
    assert heads(tmp_path / "p.png", "--out", tmp_path / "o", "--fit", "stretch").exit_code == 2
    assert heads(tmp_path / "p.png", "--out", tmp_path / "o", "--ext", "gif").exit_code == 2


def test_default_detector_comes_from_the_weights_dirs(tmp_path, monkeypatch, det):
    monkeypatch.setattr(weights, "weights_dirs", lambda: [tmp_path / "w"])
    make_image(tmp_path / "p.png", size=(60, 60))
    r = heads(tmp_path / "p.png", "--out", tmp_path / "o")
    assert r.exit_code == 1 and "no head detector is installed" in r.stderr and "train-detector" in r.stderr
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / weights.DEFAULT_DETECTOR).write_bytes(det.read_bytes())
    r = heads(tmp_path / "p.png", "--out", tmp_path / "o", "--threshold", 0)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "o" / "options.json").read_text())["detector"] == str(tmp_path / "w" / weights.DEFAULT_DETECTOR)


def test_info_describes_a_detector(det):
    r = runner.invoke(app, ["info", str(det), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["kind"] == "detector" and d["parameters"]["det"] > 0 and "threshold" in d["extra"]


# --- translate --heads ----------------------------------------------------------------------------

BOX = (30.0, 20.0, 70.0, 60.0)  # the stub's head window in every 100 x 80 photo


class StubDetector:
    """A head at BOX in 100 x 80 photos, none in other photos."""

    threshold = 0.5

    def __init__(self, box=BOX):
        self.calls, self.box = 0, box

    def to(self, *args):
        return self

    def detect(self, img):
        self.calls += 1
        found = img.size == (100, 80)
        return Detection(self.box if found else (0.0, 0.0, 10.0, 10.0), 0.9 if found else 0.1, found)


@pytest.fixture
def stub(monkeypatch):
    s = StubDetector()
    monkeypatch.setattr(translate_cmd, "open_detector", lambda spec, dev, precision: s)
    return s


def translate(*args, input=None):
    return runner.invoke(app, ["translate", *map(str, args), "--device", "cpu"], input=input)


def px(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_translate_heads_pastes_back_at_full_size(tmp_path, tiny_gen_ckpt, stub):
    photo = make_image(tmp_path / "in" / "cat.png", size=(100, 80), seed=3)
    r = translate(photo, "-m", tiny_gen_ckpt, "--heads", "-n", 2, "--grid", "--json", "--outdir", tmp_path / "o")
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [os.path.basename(x["output"]) for x in lines] == ["cat_00.png", "cat_01.png", "cat_grid.png"]
    a = px(photo)
    inside = np.zeros(a.shape[:2], bool)
    inside[20:60, 30:70] = True
    for k in range(2):
        b = px(tmp_path / "o" / f"cat_{k:02d}.png")
        assert b.shape == a.shape  # the photo keeps its size
        assert np.array_equal(a[~inside], b[~inside])  # and its background, bit for bit
        assert np.abs(a[25:55, 35:65] - b[25:55, 35:65]).mean() > 5  # the head is translated
    assert not np.array_equal(px(tmp_path / "o" / "cat_00.png"), px(tmp_path / "o" / "cat_01.png"))
    assert Image.open(tmp_path / "o" / "cat_grid.png").size[0] > 3 * 100  # photo + 2 pasted photos


def test_translate_heads_fit_pad_keeps_a_head_at_the_edge_centred(tmp_path, tiny_gen_ckpt, stub):
    stub.box = (-20.0, -10.0, 40.0, 50.0)  # a head window reaching past the top-left corner
    photo = make_image(tmp_path / "cat.png", size=(100, 80), seed=5)
    a = px(photo)
    r = translate(photo, "-m", tiny_gen_ckpt, "--heads", "-n", 1, "--outdir", tmp_path / "pad")
    assert r.exit_code == 0, r.output  # default --fit pad: the window stays where the head is
    b = px(tmp_path / "pad" / "cat_00.png")
    assert b.shape == a.shape and np.array_equal(a[:, 40:], b[:, 40:]) and np.array_equal(a[50:], b[50:])
    assert np.abs(a[:45, :35] - b[:45, :35]).mean() > 5
    r = translate(photo, "-m", tiny_gen_ckpt, "--heads", "--fit", "inside", "-n", 1, "--outdir", tmp_path / "in")
    assert r.exit_code == 0, r.output  # inside: moved to (0, 0, 60, 60), so columns 40-59 change too
    c = px(tmp_path / "in" / "cat_00.png")
    assert np.array_equal(a[:, 60:], c[:, 60:]) and np.abs(a[5:45, 42:55] - c[5:45, 42:55]).mean() > 5
    assert translate(photo, "-m", tiny_gen_ckpt, "--heads", "--fit", "stretch").exit_code == 2
    r = translate(photo, "-m", tiny_gen_ckpt, "--no-heads", "--fit", "inside", "-n", 1, "--outdir", tmp_path / "o")
    assert r.exit_code == 0 and "--fit ignored: they apply to --heads" in r.stderr


def test_translate_heads_with_references_stdin_and_folders(tmp_path, tiny_gen_ckpt, stub):
    for i in range(2):
        make_image(tmp_path / "in" / f"c{i}.png", size=(100, 80), seed=i)
    ref = make_image(tmp_path / "ref.png", size=(100, 80), seed=9)
    r = translate("-", "-m", tiny_gen_ckpt, "--heads", "--style-from", ref, "--outdir", tmp_path / "o",
                  input="\n".join(str(tmp_path / "in" / f"c{i}.png") for i in range(2)))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["c0_00.png", "c1_00.png"]
    assert stub.calls == 3  # the reference's head too
    r = translate(tmp_path / "in", "-m", tiny_gen_ckpt, "--heads", "-n", 1, "--outdir", tmp_path / "o2")
    assert r.exit_code == 0 and len(list((tmp_path / "o2").glob("*.png"))) == 2


def test_translate_heads_no_head_is_reported_and_skipped_or_whole(tmp_path, tiny_gen_ckpt, stub):
    make_image(tmp_path / "in" / "head.png", size=(100, 80), seed=1)
    nohead = make_image(tmp_path / "in" / "sofa.png", size=(90, 70), seed=2)
    r = translate(tmp_path / "in", "-m", tiny_gen_ckpt, "--heads", "-n", 1, "--outdir", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "o").glob("*.png")] == ["head_00.png"]
    assert "no head found in" in r.stderr and "sofa.png" in r.stderr and "1 of 2 photo(s) had no head" in r.stderr
    r = translate(nohead, "-m", tiny_gen_ckpt, "--heads", "--outdir", tmp_path / "o1")
    assert r.exit_code == 1 and len(err_lines(r)) == 1 and "--no-head whole" in r.stderr
    r = translate(nohead, "-m", tiny_gen_ckpt, "--heads", "--no-head", "whole", "-n", 1, "--outdir", tmp_path / "o2")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "o2" / "sofa_00.png").size == (41, 32)  # the whole photo at the model's size
    assert translate(nohead, "-m", tiny_gen_ckpt, "--heads", "--no-head", "maybe").exit_code == 2


def test_translate_head_options_without_heads_and_wrong_detector(tmp_path, tiny_gen_ckpt):
    photo = make_image(tmp_path / "cat.png", size=(100, 80))
    r = translate(photo, "-m", tiny_gen_ckpt, "--margin", 1.2, "-n", 1, "--outdir", tmp_path / "o")
    assert r.exit_code == 0 and "--margin ignored: they apply to --heads" in r.stderr
    r = translate(photo, "-m", tiny_gen_ckpt, "--heads", "--detector", tiny_gen_ckpt, "--outdir", tmp_path / "o2")
    assert r.exit_code == 1 and len(err_lines(r)) == 1 and "not a head detector" in r.stderr
    r = translate(photo, "-m", tmp_path / "o" / "cat_00.png", "--outdir", tmp_path / "o3")
    assert r.exit_code == 1


def test_translate_heads_default_follows_the_models_metadata(tmp_path, tiny_cfg, stub):
    gens = {"a": build_generator(tiny_cfg), "b": build_generator(tiny_cfg)}
    model = tmp_path / "heads-model.safetensors"
    save_generators(model, tiny_cfg, gens, ("cat", "dog"), step=1, framing="heads")
    photo = make_image(tmp_path / "cat.png", size=(100, 80))
    r = translate(photo, "-m", model, "-n", 1, "--outdir", tmp_path / "o")
    assert r.exit_code == 0 and "--heads is on" in r.stderr and stub.calls == 1
    assert Image.open(tmp_path / "o" / "cat_00.png").size == (100, 80)
    r = translate(photo, "-m", model, "-n", 1, "--no-heads", "--outdir", tmp_path / "o2")
    assert r.exit_code == 0 and stub.calls == 1 and Image.open(tmp_path / "o2" / "cat_00.png").size == (40, 32)


def test_detector_file_is_not_a_model(tmp_path, det):
    photo = make_image(tmp_path / "cat.png", size=(60, 60))
    r = translate(photo, "-m", det, "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and len(err_lines(r)) == 1 and "is a detector file" in r.stderr


# --- train-detector / eval-detector ---------------------------------------------------------------

@pytest.fixture
def disc_data(tmp_path):
    boxes = {}
    for k, dom in enumerate(("cat", "dog")):
        boxes[dom] = disc_photos(tmp_path / "train" / dom, 40, seed=k)
        held = disc_photos(tmp_path / "held" / dom, 12, seed=10 + k)
        boxes[dom].update({f"h{n}": b for n, b in held.items()})
        for n in held:
            (tmp_path / "held" / dom / n).rename(tmp_path / "held" / dom / f"h{n}")
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    return tmp_path


def test_train_detector_learns_and_records_its_figures(disc_data, one_thread):
    out = disc_data / "det.safetensors"
    r = runner.invoke(app, ["train-detector", "--photos", str(disc_data / "train"), "--boxes", str(disc_data / "boxes.json"),
                            "--eval-photos", str(disc_data / "held"), "--out", str(out), "--input-size", "64",
                            "--epochs", "12", "--batch-size", "8", "--probe", "0.2", "--lr", "3e-3", "--device", "cpu",
                            "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for dom in ("cat", "dog"):
        s = res["heldout"]["domains"][dom]
        assert s["n"] == 12 and s["median_iou"] > 0.5, s
    assert res["heldout"]["speed"]["ms_per_photo"] > 0 and res["heldout"]["speed"]["cpu"]
    meta, _ = read_header(out)
    assert meta["kind"] == "detector" and json.loads(meta["recipe"])["epochs"] == 12
    split = json.loads(meta["split"])
    assert sum(split["train_counts"].values()) + sum(map(len, split["probe_files"].values())) == 80
    assert json.loads(meta["heldout"])["domains"]["cat"]["n"] == 12 and 0 < float(meta["threshold"]) < 1
    r = runner.invoke(app, ["eval-detector", "--detector", str(out), "--photos", str(disc_data / "held"),
                            "--boxes", str(disc_data / "boxes.json"), "--device", "cpu", "--limit", "5"])
    assert r.exit_code == 0, r.output
    assert "cat: 5 photos with a reference box" in r.stdout and "ms per photo" in r.stdout


def test_train_detector_never_trains_on_held_out_photos(disc_data):
    r = runner.invoke(app, ["train-detector", "--photos", str(disc_data / "train"), "--boxes", str(disc_data / "boxes.json"),
                            "--eval-photos", str(disc_data / "train"), "--out", str(disc_data / "d.safetensors"),
                            "--device", "cpu"])
    assert r.exit_code == 2 and "never be trained on" in r.stderr
    assert not (disc_data / "d.safetensors").exists()
    for bad in (["--widths", "8,8,8"], ["--input-size", "50"], ["--epochs", "0"]):
        r = runner.invoke(app, ["train-detector", "--photos", str(disc_data / "train"), "--boxes",
                                str(disc_data / "boxes.json"), "--out", str(disc_data / "d.safetensors"), *bad])
        assert r.exit_code == 2 and bad[0] in r.stderr, r.output
    (disc_data / "bad.json").write_text('{"cat": {"1.png": [5, 5, 1, 1]}}')
    r = runner.invoke(app, ["train-detector", "--photos", str(disc_data / "train"), "--boxes", str(disc_data / "bad.json"),
                            "--out", str(disc_data / "d.safetensors")])
    assert r.exit_code == 1 and "is not {domain" in r.stderr
