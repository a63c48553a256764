"""`munit sample-styles`: style banks (random, references, interpolation), previews, `info` on them."""

from __future__ import annotations

import json

import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import make_image
from munit_cli.checkpoint import load_generators, read_header
from munit_cli.cli import app
from munit_cli.images import load_rgb, to_tensor
from munit_cli.models import random_styles

runner = CliRunner()


def sample(*args):
    return runner.invoke(app, ["sample-styles", *map(str, args), "--device", "cpu"])


def test_random_bank_file_and_info(tmp_path, tiny_gen_ckpt):
    out = tmp_path / "cats.safetensors"
    r = sample("-m", tiny_gen_ckpt, "--domain", "cat", "-n", 6, "--seed", 3, "--out", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == [str(out)]
    styles = load_file(out)["styles"]
    assert styles.shape == (6, 8) and styles.dtype == torch.float32
    assert torch.equal(styles, random_styles(6, 8, seed=3).flatten(1))
    meta, _ = read_header(out)
    assert {k: meta[k] for k in ("format_version", "kind", "domain", "style_dim", "source", "seed")} == {
        "format_version": "1", "kind": "styles", "domain": "cat", "style_dim": "8", "source": "random", "seed": "3"}
    assert meta["munit_version"]
    r = runner.invoke(app, ["info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["kind"] == "styles" and d["styles"] == [6, 8] and d["domains"] == {"a": "dog", "b": "cat"}
    # an existing file is kept unless --overwrite
    r = sample("-m", tiny_gen_ckpt, "--out", out)
    assert r.exit_code == 1 and "--overwrite" in r.stderr
    assert sample("-m", tiny_gen_ckpt, "-n", 2, "--out", out, "--overwrite").exit_code == 0
    assert load_file(out)["styles"].shape == (2, 8)


def test_from_references_and_interpolation(tmp_path, tiny_gen_ckpt):
    r1 = make_image(tmp_path / "r1.png", size=(40, 32), seed=1)
    r2 = make_image(tmp_path / "r2.png", size=(40, 32), seed=2)
    out = tmp_path / "refs.safetensors"
    r = sample("-m", tiny_gen_ckpt, "--from", r1, "--from", r2, "--out", out, "--json",
               "--precision", "fp32")  # compared with the fp32 computation below (auto may pick bf16)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 2 and json.loads(r.stdout)["seed"] is None
    gen_b = load_generators(tiny_gen_ckpt).gens["b"]
    with torch.no_grad():
        want = torch.cat([gen_b.enc_style(to_tensor(load_rgb(p))[None]) for p in (r1, r2)]).flatten(1)
    got = load_file(out)["styles"]
    assert torch.allclose(got, want, atol=1e-5)

    line = tmp_path / "line.safetensors"
    r = sample("-m", tiny_gen_ckpt, "--from", r1, "--from", r2, "--interpolate", "--steps", 5, "--out", line,
               "--precision", "fp32")
    assert r.exit_code == 0, r.output
    codes = load_file(line)["styles"]
    assert codes.shape == (5, 8)
    assert torch.allclose(codes[0], got[0], atol=1e-6) and torch.allclose(codes[-1], got[1], atol=1e-6)
    assert torch.allclose(codes[2], (got[0] + got[1]) / 2, atol=1e-5)
    assert read_header(line)[0]["source"].startswith("interpolate:")
    r = sample("-m", tiny_gen_ckpt, "--from", r1, "--interpolate", "--out", tmp_path / "x.safetensors")
    assert r.exit_code == 2 and "exactly two" in r.stderr


def test_preview_grid_rows_by_styles(tmp_path, tiny_gen_ckpt):
    a = make_image(tmp_path / "a.png", size=(48, 40), seed=1)
    b = make_image(tmp_path / "b.png", size=(48, 40), seed=2)
    grid = tmp_path / "grid.png"
    r = sample("-m", tiny_gen_ckpt, "-n", 3, "--preview", a, "--preview", b, "--grid-out", grid, "--size", 40)
    assert r.exit_code == 0, r.output
    w, h = Image.open(grid).size
    assert (w, h) == (4 * (48 + 2) + 2, 2 * (40 + 2) + 2)  # 2 rows x (input + 3 styles), 2 px padding


def test_bad_usage(tmp_path, tiny_gen_ckpt):
    assert sample("-m", tiny_gen_ckpt).exit_code == 2  # nothing to write
    assert sample("-m", tiny_gen_ckpt, "--out", tmp_path / "x.bin").exit_code == 2
    assert sample("-m", tiny_gen_ckpt, "--grid-out", tmp_path / "g.png").exit_code == 2
    r = sample("-m", tiny_gen_ckpt, "--domain", "horse", "--out", tmp_path / "s.safetensors")
    assert r.exit_code == 2 and "'dog'" in r.stderr
