"""`munit export`: generator-only safetensors (EMA, dtypes, one direction) and ONNX graphs."""

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_image
from munit_cli.checkpoint import base_metadata, load_generators, load_tensors, module_tensors, parse_info, save_tensors
from munit_cli.cli import app
from munit_cli.config import TrainConfig
from munit_cli.models import build_discriminator, build_generator

runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path, tiny_cfg):
    """A run folder whose checkpoints/latest.safetensors has the trainer's layout:
    raw and EMA generators, discriminators, optimizer and RNG state."""
    torch.manual_seed(0)
    tensors = {}
    for d in "ab":
        gen = build_generator(tiny_cfg)
        tensors.update(module_tensors(gen, f"gen_{d}"))
        with torch.no_grad():
            for p in gen.parameters():
                p.add_(0.05 * torch.randn_like(p))
        tensors.update(module_tensors(gen, f"gen_{d}_ema"))
        tensors.update(module_tensors(build_discriminator(tiny_cfg), f"dis_{d}"))
    tensors.update({"opt_gen.state.0.exp_avg": torch.zeros(4), "opt_dis.state.0.exp_avg": torch.zeros(4),
                    "rng.cpu": torch.zeros(8, dtype=torch.uint8)})
    path = tmp_path / "run" / "checkpoints" / "latest.safetensors"
    save_tensors(path, tensors, base_metadata("training", tiny_cfg, ("dog", "cat"), 300, train=TrainConfig(iters=300)))
    return tmp_path / "run"


def _export(*args):
    return runner.invoke(app, ["export", *map(str, args)])


def _translate(bundle, x, s, src="a", tgt="b"):
    with torch.no_grad():
        return bundle.gens[tgt].decode(bundle.gens[src].enc_content(x), s)


def test_export_keeps_only_generators(run_dir, tmp_path):
    ckpt = run_dir / "checkpoints" / "latest.safetensors"
    source = load_tensors(ckpt)
    out = tmp_path / "g.safetensors"
    r = _export(run_dir, "--out", out)
    assert r.exit_code == 0, r.output
    assert str(out) in r.stdout and "231,702 parameters" in r.stdout and "KB" in r.stdout and "EMA" in r.stdout
    tensors = load_tensors(out)
    assert {k.split(".")[0] for k in tensors} == {"gen_a", "gen_b"}
    assert all(torch.equal(v, source[k.replace("gen_a.", "gen_a_ema.", 1).replace("gen_b.", "gen_b_ema.", 1)])
               for k, v in tensors.items())
    info = parse_info(out)
    assert info.kind == "generator" and info.domains == ("dog", "cat") and info.step == 300 and info.train is None
    assert info.meta["ema"] == "true" and info.meta["weights_dtype"] == "float32"
    assert info.meta["source"] == "run/checkpoints/latest.safetensors (training, step 300)"

    raw = tmp_path / "raw.safetensors"
    r = _export(ckpt, "--out", raw, "--no-ema", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["ema"] is False and d["parameters"] == 231702 and d["bytes"] == raw.stat().st_size
    assert all(torch.equal(v, source[k]) for k, v in load_tensors(raw).items())

    r = _export(run_dir, "--out", out)  # no silent overwrite
    assert r.exit_code == 1 and r.stderr.startswith("error:") and "--overwrite" in r.stderr
    assert _export(run_dir, "--out", out, "--overwrite").exit_code == 0

    r = runner.invoke(app, ["info", str(out), "--json"])
    d = json.loads(r.stdout)
    assert d["provenance"] == "exported from run/checkpoints/latest.safetensors (training, step 300) (EMA weights)"
    assert d["holds"] == ["generator a (dog), float32", "generator b (cat), float32"]
    d = json.loads(runner.invoke(app, ["info", str(run_dir), "--json"]).stdout)  # a run folder: its latest checkpoint
    assert d["kind"] == "training" and "discriminator b, float32" in d["holds"] and "generator optimizer state, float32" in d["holds"]


def test_export_without_ema_weights_says_so(tmp_path, tiny_cfg, tiny_gen_ckpt):
    tensors = load_tensors(tiny_gen_ckpt)  # becomes a training checkpoint without EMA copies
    ckpt = tmp_path / "noema.safetensors"
    save_tensors(ckpt, tensors, base_metadata("training", tiny_cfg, ("dog", "cat"), 5, train=TrainConfig(ema=False)))
    out = tmp_path / "g.safetensors"
    r = _export(ckpt, "--out", out)
    assert r.exit_code == 0 and "no EMA weights" in r.stderr and parse_info(out).meta["ema"] == "false"
    r = _export(tiny_gen_ckpt, "--out", tmp_path / "g2.safetensors")  # a generator file: nothing to warn about
    assert r.exit_code == 0 and r.stderr == ""


def test_fp16_export_halves_size_and_translates_alike(run_dir, tmp_path):
    paths = {dt: tmp_path / f"{dt}.safetensors" for dt in ("float32", "float16", "bfloat16")}
    for dt, p in paths.items():
        assert _export(run_dir, "--out", p, "--dtype", dt).exit_code == 0
    size32 = paths["float32"].stat().st_size
    for dt in ("float16", "bfloat16"):
        assert 0.45 < paths[dt].stat().st_size / size32 < 0.55
    b32, b16 = load_generators(paths["float32"]), load_generators(paths["float16"])
    assert b16.dtype == torch.float16
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    s = torch.randn(2, 8, 1, 1)
    y32, y16 = _translate(b32, x, s), _translate(b16, x, s)  # in [-1, 1]
    diff = ((y32 - y16) / 2).abs().mean().item()  # on the [0, 1] pixel scale
    assert 0 < diff < 1 / 255
    r = _export(run_dir, "--out", tmp_path / "x.safetensors", "--dtype", "int8")
    assert r.exit_code == 2 and "int8" in r.stderr


def test_export_records_the_framing(run_dir, tmp_path):
    heads, again = tmp_path / "heads.safetensors", tmp_path / "again.safetensors"
    assert _export(run_dir, "--out", heads, "--framing", "heads").exit_code == 0
    assert load_generators(heads).info.meta["framing"] == "heads"  # translate --heads becomes its default
    assert _export(heads, "--out", again).exit_code == 0  # re-exports keep the record
    assert load_generators(again).info.meta["framing"] == "heads"
    plain = tmp_path / "plain.safetensors"
    assert _export(run_dir, "--out", plain).exit_code == 0
    assert "framing" not in load_generators(plain).info.meta
    r = _export(run_dir, "--out", tmp_path / "x.safetensors", "--framing", "faces")
    assert r.exit_code == 2 and "--framing 'faces'" in r.stderr and not (tmp_path / "x.safetensors").exists()


def test_direction_export(run_dir, tmp_path):
    out = tmp_path / "dog2cat.safetensors"
    r = _export(run_dir, "--out", out, "--direction", "dog2cat")
    assert r.exit_code == 0, r.output
    nets = {".".join(k.split(".")[:2]) for k in load_tensors(out)}
    assert nets == {"gen_a.enc_content", "gen_b.enc_style", "gen_b.mlp", "gen_b.dec"}
    full, part = load_generators(run_dir / "checkpoints" / "latest.safetensors"), load_generators(out)
    x, s = torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(1, 8, 1, 1)
    assert torch.equal(_translate(full, x, s), _translate(part, x, s))
    assert parse_info(out).meta["direction"] == "a2b"
    d = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)
    assert d["direction"] == "a2b" and d["holds"][0] == "generator a (dog): content encoder, float32"

    img = make_image(tmp_path / "in" / "dog.png", size=(36, 32))
    r = runner.invoke(app, ["translate", str(img), "--model", str(out), "--outdir", str(tmp_path / "o1"), "-n", "2"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "o1").glob("*.png"))) == 2
    r = runner.invoke(app, ["translate", str(img), "--model", str(out), "--direction", "b2a",
                            "--outdir", str(tmp_path / "o2")])
    assert r.exit_code == 1 and r.stderr.startswith("error:") and "cannot translate cat2dog" in r.stderr
    assert not list((tmp_path / "o2").glob("*.png"))

    r = _export(out, "--out", tmp_path / "b2a.safetensors", "--direction", "b2a")  # nothing to export it from
    assert r.exit_code == 1 and "cannot translate cat2dog" in r.stderr
    r = _export(out, "--out", tmp_path / "again.safetensors", "--dtype", "float16")  # keeps its direction
    assert r.exit_code == 0 and parse_info(tmp_path / "again.safetensors").meta["direction"] == "a2b"
    r = _export(run_dir, "--out", tmp_path / "x.safetensors", "--direction", "dog2fox")
    assert r.exit_code == 2 and "dog2cat" in r.stderr


def test_export_bad_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    r = _export(tmp_path / "empty", "--out", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and "checkpoints/latest.safetensors" in r.stderr
    styles = tmp_path / "s.safetensors"
    save_tensors(styles, {"styles": torch.zeros(3, 8)}, {"format_version": "1", "kind": "styles"})
    r = _export(styles, "--out", tmp_path / "x.safetensors")
    assert r.exit_code == 1 and "styles file" in r.stderr
    r = _export(styles, "--out", tmp_path / "x", "--format", "tflite")
    assert r.exit_code == 2 and "tflite" in r.stderr


def test_onnx_needs_the_extra(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    r = _export(run_dir, "--out", tmp_path / "onnx", "--format", "onnx", "--direction", "a2b")
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and 'pip install "munit-cli[onnx]"' in lines[0]


def test_onnx_matches_pytorch(run_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "onnx"
    r = _export(run_dir, "--out", out, "--format", "onnx", "--direction", "cat2dog", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["direction"] == "b2a"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["direction"] == "b2a" and manifest["source_domain"] == "cat" and manifest["style_dim"] == 8
    assert manifest["image_size"] == 32 and manifest["munit_version"] and "latest.safetensors" in manifest["source"]
    bundle = load_generators(run_dir / "checkpoints" / "latest.safetensors")  # EMA weights, as exported
    gen_src, gen_tgt = bundle.gens["b"], bundle.gens["a"]
    sess = {n: ort.InferenceSession(str(out / f"{n}.onnx"), providers=["CPUExecutionProvider"])
            for n in ("content_encoder", "style_encoder", "decoder")}
    torch.manual_seed(3)
    for batch, (h, w) in ((1, (32, 32)), (3, (48, 40))):
        x = torch.rand(batch, 3, h, w) * 2 - 1
        s = torch.randn(batch, 8, 1, 1)
        with torch.no_grad():
            c, st = gen_src.enc_content(x), gen_tgt.enc_style(x)
            y = gen_tgt.decode(c, s)
        got_c = sess["content_encoder"].run(None, {"image": x.numpy()})[0]
        got_s = sess["style_encoder"].run(None, {"image": x.numpy()})[0]
        got_y = sess["decoder"].run(None, {"content": c.numpy(), "style": s.numpy()})[0]
        assert got_y.shape == (batch, 3, h, w)
        for got, want in ((got_c, c), (got_s, st), (got_y, y)):
            assert got.shape == tuple(want.shape)
            assert (torch.from_numpy(got) - want).abs().max().item() < 1e-4
    d = json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)
    assert d["kind"] == "onnx" and d["direction"] == "b2a (cat -> dog)" and len(d["holds"]) == 3
    assert d["provenance"].startswith("exported from run/checkpoints/latest.safetensors")
    r = _export(run_dir, "--out", out, "--format", "onnx", "--direction", "a2b")
    assert r.exit_code == 1 and "--overwrite" in r.stderr
    r = _export(run_dir, "--out", tmp_path / "o2", "--format", "onnx")
    assert r.exit_code == 2 and "--direction" in r.stderr


def test_info_describes_styles_and_folders(tmp_path):
    styles = tmp_path / "cat_styles.safetensors"
    save_tensors(styles, {"styles": torch.zeros(5, 8)}, {"format_version": "1", "kind": "styles", "domain": "cat",
                                                         "style_dim": "8", "source": "random", "seed": "4"})
    d = json.loads(runner.invoke(app, ["info", str(styles), "--json"]).stdout)
    assert d["holds"] == ["5 style codes of dimension 8 for cat, float32"]
    assert d["provenance"] == "sampled from random, seed 4"
    r = runner.invoke(app, ["info", str(styles)])
    assert r.exit_code == 0 and "5 style codes" in r.stdout
    r = runner.invoke(app, ["info", str(tmp_path)])
    assert r.exit_code == 1 and "neither a run folder" in r.stderr
