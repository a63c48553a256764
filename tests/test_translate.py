"""`munit translate` through the CLI, and the inference core it drives (tiny model, small images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from conftest import make_image
from munit_cli import inference, weights
from munit_cli.checkpoint import GEN_PARTS, base_metadata, load_generators, module_tensors, save_tensors
from munit_cli.cli import app
from munit_cli.errors import MunitError
from munit_cli.images import load_rgb, to_tensor, to_uint8
from munit_cli.models import build_generator, random_styles

runner = CliRunner()
JSON_KEYS = {"input", "output", "style_index", "style_source", "seed", "direction"}


def run(*args, input=None):
    return runner.invoke(app, ["translate", *map(str, args), "--device", "cpu"], input=input)


def pngs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture
def dog(tmp_path) -> Path:
    return make_image(tmp_path / "in" / "dog.png", size=(48, 40), seed=1)


# --- acceptance ---------------------------------------------------------------------------

def test_n8_writes_8_files_and_seed_decides_bytes(tmp_path, tiny_gen_ckpt, dog):
    r = run(dog, "-m", tiny_gen_ckpt, "-n", 8, "--seed", 5, "--outdir", tmp_path / "o1")
    assert r.exit_code == 0, r.output
    assert pngs(tmp_path / "o1") == [f"dog_{k:02d}.png" for k in range(8)]
    assert r.stdout.split() == [str(tmp_path / "o1" / f"dog_{k:02d}.png") for k in range(8)]
    assert Image.open(tmp_path / "o1" / "dog_00.png").size == (38, 32)  # shorter side -> model size 32
    assert run(dog, "-m", tiny_gen_ckpt, "-n", 8, "--seed", 5, "--outdir", tmp_path / "o2").exit_code == 0
    assert run(dog, "-m", tiny_gen_ckpt, "-n", 8, "--seed", 6, "--outdir", tmp_path / "o3").exit_code == 0
    for k in range(8):
        name = f"dog_{k:02d}.png"
        assert (tmp_path / "o1" / name).read_bytes() == (tmp_path / "o2" / name).read_bytes()
        assert not np.array_equal(pixels(tmp_path / "o1" / name), pixels(tmp_path / "o3" / name))
    # the 8 styles give 8 different images
    assert len({(tmp_path / "o1" / f"dog_{k:02d}.png").read_bytes() for k in range(8)}) == 8


def test_style_from_equals_decoding_the_reference_style(tmp_path, tiny_gen_ckpt, dog):
    ref = make_image(tmp_path / "ref" / "cat.png", size=(48, 40), seed=9)
    r = run(dog, "-m", tiny_gen_ckpt, "--style-from", ref, "--size", 40, "--outdir", tmp_path / "o", "--json",
            "--precision", "fp32")  # compared with the fp32 computation below (auto may pick bf16)
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["style_source"] == f"reference:{ref}" and rec["style_index"] == 0 and rec["seed"] is None
    assert pngs(tmp_path / "o") == ["dog_00.png"]
    gens = load_generators(tiny_gen_ckpt).gens  # plain fp32, contiguous: the textbook computation
    with torch.no_grad():
        s_b = gens["b"].enc_style(to_tensor(load_rgb(ref))[None])
        x_ab = gens["b"].decode(gens["a"].enc_content(to_tensor(load_rgb(dog))[None]), s_b)
    diff = np.abs(pixels(tmp_path / "o" / "dog_00.png") - to_uint8(x_ab[0]).numpy().astype(np.int16))
    assert diff.max() <= 1 and diff.mean() < 0.01


def test_style_file_round_trip_from_sample_styles(tmp_path, tiny_gen_ckpt, dog):
    bank = tmp_path / "cats.safetensors"
    r = runner.invoke(app, ["sample-styles", "-m", str(tiny_gen_ckpt), "--domain", "cat", "-n", 3, "--seed", 4,
                            "--out", str(bank), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    r = run(dog, "-m", tiny_gen_ckpt, "--style-file", bank, "--outdir", tmp_path / "f", "--json")
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["style_index"] for x in recs] == [0, 1, 2] and recs[0]["style_source"] == f"file:{bank}"
    assert "warning" not in r.stderr
    # the file holds the same codes translate draws from the same seed
    assert run(dog, "-m", tiny_gen_ckpt, "-n", 3, "--seed", 4, "--outdir", tmp_path / "r").exit_code == 0
    for k in range(3):
        assert (tmp_path / "f" / f"dog_{k:02d}.png").read_bytes() == (tmp_path / "r" / f"dog_{k:02d}.png").read_bytes()
    # a bank for the other domain is used, with a warning
    r = run(dog, "-m", tiny_gen_ckpt, "--style-file", bank, "--to", "dog", "--outdir", tmp_path / "w")
    assert r.exit_code == 0 and "made for domain 'cat'" in r.stderr


def test_style_file_with_wrong_style_dim(tmp_path, tiny_gen_ckpt, dog):
    bad = tmp_path / "bad.safetensors"
    inference.save_style_bank(bad, torch.zeros(2, 4), "cat", "random", 0)
    r = run(dog, "-m", tiny_gen_ckpt, "--style-file", bad, "--outdir", tmp_path / "o")
    assert r.exit_code == 1
    assert "has style_dim 4 but the model expects 8" in r.stderr and "Traceback" not in r.output
    r = run(dog, "-m", tiny_gen_ckpt, "--style-file", tiny_gen_ckpt, "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and "not a styles file" in r.stderr


def test_keep_size_returns_input_size(tmp_path, tiny_gen_ckpt):
    img = make_image(tmp_path / "odd.png", size=(341, 257), seed=3)
    r = run(img, "-m", tiny_gen_ckpt, "-n", 2, "--keep-size", "--outdir", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "o" / "odd_00.png").size == (341, 257)
    assert Image.open(tmp_path / "o" / "odd_01.png").size == (341, 257)


def test_stdin_dash_reads_paths(tmp_path, tiny_gen_ckpt):
    a = make_image(tmp_path / "x" / "a.png", seed=1)
    b = make_image(tmp_path / "y" / "b.jpg", seed=2, fmt="JPEG")
    r = run("-", "-m", tiny_gen_ckpt, "-n", 1, "--outdir", tmp_path / "o", input=f"{a}\n\n{b}\n")
    assert r.exit_code == 0, r.output
    assert pngs(tmp_path / "o") == ["a_00.png", "b_00.png"]
    r = run("-", "-m", tiny_gen_ckpt, input="")
    assert r.exit_code == 2 and "no inputs" in r.stderr


def test_json_lines_and_nothing_else_on_stdout(tmp_path, tiny_gen_ckpt):
    folder = tmp_path / "dogs"
    make_image(folder / "a.png", seed=1)
    make_image(folder / "sub" / "b.png", seed=2)
    r = run(folder, "-m", tiny_gen_ckpt, "-n", 2, "--seed", 7, "--grid", "--outdir", tmp_path / "o", "--json")
    assert r.exit_code == 0, r.output
    recs = [json.loads(line) for line in r.stdout.splitlines()]  # every line parses
    assert all(set(x) == JSON_KEYS for x in recs) and len(recs) == 6
    assert [(Path(x["output"]).relative_to(tmp_path / "o").as_posix(), x["style_index"]) for x in recs] == [
        ("a_00.png", 0), ("a_01.png", 1), ("a_grid.png", None), ("sub/b_00.png", 0), ("sub/b_01.png", 1), ("sub/b_grid.png", None)]
    assert all(x["seed"] == 7 and x["direction"] == "a2b" and x["style_source"] == "random" for x in recs)
    assert all(Path(x["output"]).is_file() for x in recs)
    assert Image.open(tmp_path / "o" / "a_grid.png").size[0] > 3 * Image.open(tmp_path / "o" / "a_00.png").size[0]


def test_skip_existing_then_overwrite(tmp_path, tiny_gen_ckpt, dog):
    out = tmp_path / "o"
    assert run(dog, "-m", tiny_gen_ckpt, "-n", 3, "--outdir", out).exit_code == 0
    good = (out / "dog_01.png").read_bytes()
    (out / "dog_01.png").write_bytes(b"stale")
    (out / "dog_02.png").unlink()  # an interrupted run: the rerun writes only what is missing
    r = run(dog, "-m", tiny_gen_ckpt, "-n", 3, "--outdir", out)
    assert r.exit_code == 0 and r.stdout.split() == [str(out / "dog_02.png")]
    assert (out / "dog_01.png").read_bytes() == b"stale" and "skipped 2 existing" in r.stderr
    r = run(dog, "-m", tiny_gen_ckpt, "-n", 3, "--outdir", out, "--overwrite")
    assert r.exit_code == 0 and len(r.stdout.split()) == 3
    assert (out / "dog_01.png").read_bytes() == good
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_corrupt_input_among_good_ones(tmp_path, tiny_gen_ckpt):
    folder = tmp_path / "dogs"
    make_image(folder / "a.png", seed=1)
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    make_image(folder / "c.png", seed=3)
    r = run(folder, "-m", tiny_gen_ckpt, "-n", 2, "--outdir", tmp_path / "o", "--workers", 2)
    assert r.exit_code == 1
    assert pngs(tmp_path / "o") == ["a_00.png", "a_01.png", "c_00.png", "c_01.png"]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "b.png" in warnings[0]
    assert "error: 1 of 3 input(s) failed" in r.stderr and "Traceback" not in r.output


# --- options --------------------------------------------------------------------------------

def test_direction_by_name_and_unknown_domain(tmp_path, tiny_gen_ckpt, dog):
    r = run(dog, "-m", tiny_gen_ckpt, "-n", 1, "--to", "dog", "--outdir", tmp_path / "o", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["direction"] == "b2a"
    r = run(dog, "-m", tiny_gen_ckpt, "-n", 1, "--direction", "dog2cat", "--outdir", tmp_path / "p", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["direction"] == "a2b"
    r = run(dog, "-m", tiny_gen_ckpt, "--to", "horse")
    assert r.exit_code == 2 and "'dog'" in r.stderr and "'cat'" in r.stderr
    r = run(dog, "-m", tiny_gen_ckpt, "--to", "dog", "--direction", "a2b")
    assert r.exit_code == 2 and "contradicts" in r.stderr


def test_direction_only_export_refuses_the_other_direction(tmp_path, tiny_cfg, dog):
    # what `munit export --direction a2b` writes: dog's content encoder, cat's style encoder + MLP + decoder
    parts = {"a": ["enc_content"], "b": ["enc_style", "mlp", "dec"]}
    gens = {"a": build_generator(tiny_cfg), "b": build_generator(tiny_cfg)}
    tensors = {k: v for d in "ab" for k, v in module_tensors(gens[d], f"gen_{d}").items() if k.split(".")[1] in parts[d]}
    path = tmp_path / "dog2cat.safetensors"
    save_tensors(path, tensors, base_metadata("generator", tiny_cfg, ("dog", "cat"), 1, parts=json.dumps(parts)))
    assert run(dog, "-m", path, "-n", 1, "--outdir", tmp_path / "o").exit_code == 0
    r = run(dog, "-m", path, "--to", "dog", "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and "exported for dog2cat (a2b) only" in r.stderr
    bundle = load_generators(path)
    assert inference.supported_directions(bundle) == ["a2b"]
    with pytest.raises(MunitError, match="cannot translate cat2dog"):
        inference.require_direction(bundle, "b", "a")
    inference.require_direction(bundle, "a", "b", style_encoder=True)


def test_per_image_and_truncation(tmp_path, tiny_gen_ckpt):
    a = make_image(tmp_path / "in" / "a.png", seed=1)
    b = make_image(tmp_path / "in" / "b.png", seed=1)  # same picture, two inputs
    assert run(a, b, "-m", tiny_gen_ckpt, "-n", 2, "--outdir", tmp_path / "same").exit_code == 0
    assert (tmp_path / "same" / "a_00.png").read_bytes() == (tmp_path / "same" / "b_00.png").read_bytes()
    r = run(a, b, "-m", tiny_gen_ckpt, "-n", 2, "--per-image", "--outdir", tmp_path / "per", "--json")
    assert r.exit_code == 0
    seeds = [json.loads(line)["seed"] for line in r.stdout.splitlines()]
    assert seeds[0] == seeds[1] == inference.per_image_seed(0, 0) and seeds[2] == inference.per_image_seed(0, 1)
    assert (tmp_path / "per" / "a_00.png").read_bytes() != (tmp_path / "per" / "b_00.png").read_bytes()
    assert run(a, "-m", tiny_gen_ckpt, "-n", 2, "--truncation", 0, "--outdir", tmp_path / "t0").exit_code == 0
    assert (tmp_path / "t0" / "a_00.png").read_bytes() == (tmp_path / "t0" / "a_01.png").read_bytes()


def test_mean_style_ext_and_bad_usage(tmp_path, tiny_gen_ckpt, dog):
    refs = tmp_path / "refs"
    make_image(refs / "r1.png", seed=5)
    make_image(refs / "r2.png", seed=6)
    r = run(dog, "-m", tiny_gen_ckpt, "--style-from", refs, "--outdir", tmp_path / "two", "--ext", "jpg", "-n", 5)
    assert r.exit_code == 0 and "-n/--num-styles ignored" in r.stderr
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["dog_00.jpg", "dog_01.jpg"]
    assert Image.open(tmp_path / "two" / "dog_00.jpg").format == "JPEG"
    r = run(dog, "-m", tiny_gen_ckpt, "--style-from", refs, "--mean-style", "--outdir", tmp_path / "mean", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["style_source"].startswith("mean:")
    assert run(dog, "-m", tiny_gen_ckpt, "--ext", "tiff").exit_code == 2
    assert run(dog, "-m", tiny_gen_ckpt, "--precision", "fp16").exit_code == 2  # fp16 is for GPUs
    assert run(dog, "-m", tiny_gen_ckpt, "--style", "fancy").exit_code == 2
    r = run(tmp_path / "missing.png", "-m", tiny_gen_ckpt)
    assert r.exit_code == 1 and "does not exist" in r.stderr


def test_same_stem_from_two_folders_gets_distinct_names(tmp_path, tiny_gen_ckpt):
    # (was: refused with exit 1; issue 14: mirrored relative to the folders' common parent)
    a = make_image(tmp_path / "x" / "p.png", seed=1)
    b = make_image(tmp_path / "y" / "p.jpg", seed=2, fmt="JPEG")
    r = run(a, b, "-m", tiny_gen_ckpt, "-n", 1, "--outdir", tmp_path / "o", "--json")
    assert r.exit_code == 0, r.output
    assert [(Path(x["input"]).name, Path(x["output"]).relative_to(tmp_path / "o").as_posix())
            for x in map(json.loads, r.stdout.splitlines())] == [("p.png", "x/p_00.png"), ("p.jpg", "y/p_00.png")]
    assert (tmp_path / "o" / "x" / "p_00.png").read_bytes() != (tmp_path / "o" / "y" / "p_00.png").read_bytes()


def test_bf16_on_cpu_close_to_fp32(tmp_path, tiny_gen_ckpt, dog):
    assert run(dog, "-m", tiny_gen_ckpt, "-n", 2, "--outdir", tmp_path / "f").exit_code == 0
    assert run(dog, "-m", tiny_gen_ckpt, "-n", 2, "--precision", "bf16", "--outdir", tmp_path / "b").exit_code == 0
    mse = ((pixels(tmp_path / "f" / "dog_00.png") - pixels(tmp_path / "b" / "dog_00.png")) ** 2).mean()
    assert 10 * np.log10(255**2 / max(mse, 1e-10)) > 25


# --- core ---------------------------------------------------------------------------------

def test_translator_pads_crops_and_batches(tiny_gen_ckpt):
    bundle = load_generators(tiny_gen_ckpt)
    x_a = torch.rand(3, 37, 45) * 2 - 1  # sides not multiples of 4
    s_b = random_styles(5, 8, seed=0)
    one = inference.Translator(bundle, "a", "b", torch.device("cpu"), batch_size=5).translate(x_a, s_b)
    per = inference.Translator(bundle, "a", "b", torch.device("cpu"), batch_size=2).translate(x_a, s_b)
    assert one.shape == (5, 37, 45, 3) and one.dtype == torch.uint8
    assert (one.int() - per.int()).abs().max() <= 1
    gens = load_generators(tiny_gen_ckpt).gens
    with torch.no_grad():  # reflect-pad to 40x48, translate, crop back
        padded = F.pad(x_a[None], (0, 3, 0, 3), mode="reflect")
        ref = gens["b"].decode(gens["a"].enc_content(padded).expand(5, -1, -1, -1), s_b)[..., :37, :45]
    assert (to_uint8(ref).int() - one.int()).abs().max() <= 1


def test_content_encoded_once_per_input(tmp_path, tiny_gen_ckpt):
    for name in ("a", "b"):
        make_image(tmp_path / "in" / f"{name}.png", seed=ord(name))
    tr = inference.Translator(load_generators(tiny_gen_ckpt), "a", "b", torch.device("cpu"), batch_size=2)
    calls = {"enc_content": 0, "dec": 0}
    for part in calls:
        getattr(tr.gen_src if part == "enc_content" else tr.gen_tgt, part).register_forward_hook(
            lambda *_, part=part: calls.__setitem__(part, calls[part] + 1))
    events = []
    summary = inference.translate_files(tr, inference.plan_jobs([str(tmp_path / "in")]), inference.random_bank(5, 8, 0),
                                        tmp_path / "o", size=32, workers=1, report=events.append)
    assert calls == {"enc_content": 2, "dec": 6}  # per input: content once, 5 styles in batches of 2
    assert summary.written == 10 and not summary.failed
    assert [e.kind for e in events] == ["output"] * 5 + ["done"] + ["output"] * 5 + ["done"]


def test_style_codes_helpers():
    assert inference.per_image_seed(0, 1) == inference.per_image_seed(0, 1) != inference.per_image_seed(0, 2)
    assert inference.per_image_seed(1, 1) != inference.per_image_seed(0, 1)
    bank = inference.random_bank(3, 8, seed=2, truncation=0.5, per_image=True)
    c0, seed0 = bank.for_input(0)
    assert c0.shape == (3, 8, 1, 1) and seed0 == inference.per_image_seed(2, 0)
    assert torch.equal(c0, random_styles(3, 8, seed0) * 0.5)
    s = inference.interpolate_styles(torch.zeros(8), torch.ones(8), 5)
    assert s.shape == (5, 8, 1, 1) and torch.allclose(s[:, 0, 0, 0], torch.tensor([0, 0.25, 0.5, 0.75, 1]))


def test_plan_jobs_layout_and_outdir_excluded(tmp_path):
    make_image(tmp_path / "d" / "a.png")
    make_image(tmp_path / "d" / "s" / "b.png")
    make_image(tmp_path / "d" / "out" / "a_00.png")  # earlier outputs inside the input folder
    jobs = inference.plan_jobs([str(tmp_path / "d"), str(tmp_path / "d" / "a.png")], exclude=tmp_path / "d" / "out")
    assert [j.stem.as_posix() for j in jobs] == ["a", "s/b"]
    again = inference.plan_jobs([str(tmp_path / "d" / "out" / "a_00.png")], exclude=tmp_path / "d" / "out")
    assert [j.stem.as_posix() for j in again] == ["a_00"]  # named explicitly: translated again
    assert inference.output_path(Path("o"), jobs[1].stem, 3, "png") == Path("o/s/b_03.png")
    assert inference.output_path(Path("o"), jobs[1].stem, None, "jpg") == Path("o/s/b_grid.jpg")


# --- model resolution -------------------------------------------------------------------

def test_resolve_model(tmp_path, monkeypatch, tiny_gen_ckpt):
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setattr(weights, "weights_dirs", lambda: [wdir])
    with pytest.raises(MunitError, match="no default model is installed: pass --model"):
        weights.resolve_model(None)
    assert weights.resolve_model(str(tiny_gen_ckpt)) == tiny_gen_ckpt
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "latest.safetensors").write_bytes(tiny_gen_ckpt.read_bytes())
    assert weights.resolve_model(str(run_dir)) == run_dir / "checkpoints" / "latest.safetensors"
    with pytest.raises(MunitError, match="not a run directory"):
        weights.resolve_model(str(tmp_path / "weights"))
    (wdir / "pets.safetensors").write_bytes(b"x")
    (wdir / weights.DEFAULT_MODEL).write_bytes(b"x")
    assert weights.resolve_model("pets") == weights.resolve_model("pets.safetensors") == wdir / "pets.safetensors"
    assert weights.resolve_model(None) == wdir / weights.DEFAULT_MODEL
    with pytest.raises(MunitError, match="installed models: .*pets.safetensors"):
        weights.resolve_model("horses")
    with pytest.raises(MunitError, match="does not exist"):
        weights.resolve_model(str(tmp_path / "nope" / "m.safetensors"))


def test_weights_dir_env_var_and_cli_default(tmp_path, monkeypatch, tiny_gen_ckpt, dog):
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "w"))
    assert weights.weights_dirs()[0] == tmp_path / "w"
    monkeypatch.setattr(weights, "weights_dirs", lambda: [tmp_path / "w"])
    r = run(dog, "--outdir", tmp_path / "o")
    assert r.exit_code == 1 and "no default model is installed" in r.stderr
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / weights.DEFAULT_MODEL).write_bytes(tiny_gen_ckpt.read_bytes())
    r = run(dog, "-n", 1, "--outdir", tmp_path / "o")
    assert r.exit_code == 0 and pngs(tmp_path / "o") == ["dog_00.png"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tmp_path, tiny_gen_ckpt, dog):
    base = ["translate", str(dog), "-m", str(tiny_gen_ckpt), "-n", "4", "--seed", "3"]
    assert runner.invoke(app, [*base, "--device", "cpu", "--outdir", str(tmp_path / "c")]).exit_code == 0
    assert runner.invoke(app, [*base, "--device", "cuda", "--outdir", str(tmp_path / "g")]).exit_code == 0
    for k in range(4):
        diff = np.abs(pixels(tmp_path / "c" / f"dog_{k:02d}.png") - pixels(tmp_path / "g" / f"dog_{k:02d}.png"))
        assert diff.max() <= 2 and diff.mean() < 0.1


def test_style_options_checked_in_one_place():
    from munit_cli.styles import StyleOptions

    for bad, needle in ((StyleOptions(style="fancy"), "unknown --style"),
                        (StyleOptions(refs=("r.png",), style_file=Path("s.safetensors")), "alternatives"),
                        (StyleOptions(num_styles=0), "--num-styles must be >= 1"),
                        (StyleOptions(truncation=-1.0), "--truncation must be >= 0")):
        with pytest.raises(MunitError, match=needle) as e:
            bad.check()
        assert e.value.exit_code == 2
    assert StyleOptions().check() == [] and StyleOptions().n == 8
    assert StyleOptions(refs=("r.png",), num_styles=3, seed=4).check() == [
        "-n/--num-styles, --seed ignored: styles come from --style-from"]
    assert StyleOptions(style_file=Path("s"), per_image=True, mean=True).check() == [
        "--per-image ignored: styles come from --style-file", "--mean-style ignored: it applies to --style-from references"]
    assert StyleOptions(refs=("a", "b"), refs_flag="--from", truncation=0.5).check() == [
        "--truncation ignored: styles come from --from"]
    assert "-n ignored with --interpolate" in StyleOptions(interpolate=True, num_styles=5).check()[0]
