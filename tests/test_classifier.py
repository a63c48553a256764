"""The domain classifier (issue 12): learns an easy synthetic pair, stores its recipe, held-out
accuracy and split, tells which images it trained on, and refuses other files clearly."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_shape_domains
from munit_cli.checkpoint import read_header
from munit_cli.classifier import (Recipe, augment, content_hash, is_held_out, load_classifier, select_files, square)
from munit_cli.cli import app
from munit_cli.errors import MunitError
from munit_cli.images import find_images, load_rgb, to_tensor

runner = CliRunner()
FAST = ["--image-size", "32", "--epochs", "4", "--batch-size", "16", "--holdout", "0.25", "--device", "cpu"]


def test_classifier_learns_shapes_and_stores_its_split(tmp_path, one_thread):
    make_shape_domains(tmp_path / "data", 40)
    out = tmp_path / "clf.safetensors"
    r = runner.invoke(app, ["train-classifier", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "cat",
                            "--out", str(out), "--json", *FAST])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert min(res["holdout_accuracy"].values()) >= 0.9, res
    meta, _ = read_header(out)
    assert meta["kind"] == "classifier" and json.loads(meta["classes"]) == ["dog", "cat"]
    recipe = json.loads(meta["recipe"])
    assert recipe["image_size"] == 32 and recipe["epochs"] == 4 and recipe["seed"] == 0 and float(meta["time_s"]) > 0
    split = json.loads(meta["split"])
    clf = load_classifier(out)
    for name in ("dog", "cat"):
        files = find_images(tmp_path / "data" / name)
        held = [p for p in files if p.name in split["holdout_files"][name]]
        trained = [p for p in files if p.name not in split["holdout_files"][name]]
        assert held and all(is_held_out(p.name, 0.25) for p in held)
        assert len(trained) == split["train_counts"][name] == res["train_images"][name]
        assert clf.seen(trained) == trained and clf.seen(held) == []
    assert len(clf.train_hashes) == sum(split["train_counts"].values())
    # it judges images of any size (translations, files) with the same preprocessing
    x = torch.stack([to_tensor(load_rgb(p)) for p in find_images(tmp_path / "data" / "cat")[:8]])
    probs, feats = clf.judge(torch.nn.functional.interpolate(x, size=(50, 60)))
    assert probs.shape == (8, 2) and feats.shape == (8, clf.feature_dim)
    assert (probs.argmax(1) == 1).float().mean() >= 0.75


def test_refuses_existing_out_and_other_files(tmp_path, tiny_gen_ckpt):
    make_shape_domains(tmp_path / "data", 6)
    out = tmp_path / "clf.safetensors"
    out.write_bytes(b"x")
    r = runner.invoke(app, ["train-classifier", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "cat",
                            "--out", str(out), *FAST])
    assert r.exit_code == 1 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with pytest.raises(MunitError, match="not a domain classifier"):
        load_classifier(tiny_gen_ckpt)
    r = runner.invoke(app, ["train-classifier", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "dog",
                            "--out", str(tmp_path / "c2.safetensors"), *FAST])
    assert r.exit_code == 2 and "same folder" in r.stderr


def test_split_is_by_file_name_and_about_the_fraction():
    names = [f"{i}.jpg" for i in range(4000)]
    held = [n for n in names if is_held_out(n, 0.1)]
    assert 0.08 < len(held) / len(names) < 0.12
    assert held == [n for n in names if is_held_out(n, 0.1)]  # deterministic
    assert set(held) <= {n for n in names if is_held_out(n, 0.2)}  # a larger fraction only adds files


def test_exclude_and_limit_select_files(tmp_path):
    for i in range(12):
        (tmp_path / "d" / "sub").mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / f"{4890 + i}.png").write_bytes(b"")
    (tmp_path / "d" / "sub" / "1.png").write_bytes(b"")
    names = [p.name for p in select_files(tmp_path / "d", ["49??.png"])]
    assert names == [f"{n}.png" for n in range(4890, 4900)] + ["1.png"]
    assert len(select_files(tmp_path / "d", ["sub/*"], limit=3)) == 3
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "b.bin").write_bytes(b"b")
    assert len(content_hash(tmp_path / "a.bin")) == 8 and content_hash(tmp_path / "a.bin") != content_hash(tmp_path / "b.bin")


def test_augment_and_square_shapes_and_ranges():
    r = Recipe(image_size=24, store_size=28)
    u8 = torch.randint(0, 256, (5, 3, 28, 28), dtype=torch.uint8)
    a = augment(u8, r, torch.Generator().manual_seed(0))
    b = augment(u8, r, torch.Generator().manual_seed(0))
    assert a.shape == (5, 3, 24, 24) and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert square(torch.zeros(2, 3, 40, 64), 20).shape == (2, 3, 20, 20)
    assert square(torch.zeros(1, 3, 64, 40), 32).shape == (1, 3, 32, 32)
