"""`munit import-official`: reference-layout checkpoints built from our own networks."""

import json
import re

import pytest
import torch
import yaml
from typer.testing import CliRunner

from munit_cli.checkpoint import load_generators, parse_info
from munit_cli.cli import app
from munit_cli.config import GenConfig, ModelConfig, model_preset, to_dict
from munit_cli.models import build_generator
from munit_cli.official import to_reference

runner = CliRunner()


def _expand(pattern: str) -> list[str]:
    """'a.{0..2}.{w,b}' -> a.0.w, a.0.b, ... (the notation of SPEC section 4)."""
    m = re.search(r"\{([^}]*)\}", pattern)
    if not m:
        return [pattern]
    body = m.group(1)
    if ".." in body:
        lo, hi = body.split("..")
        items = [str(i) for i in range(int(lo), int(hi) + 1)]
    else:
        items = body.split(",")
    return [x for it in items for x in _expand(pattern[:m.start()] + it + pattern[m.end():])]


# SPEC section 4, with r=0..3 and j=0..1 written in.
SPEC_KEYS = [
    "enc_style.model.{0..4}.conv.{weight,bias}",
    "enc_style.model.6.{weight,bias}",
    "enc_content.model.{0,1,2}.conv.{weight,bias}",
    "enc_content.model.3.model.{0..3}.model.{0..1}.conv.{weight,bias}",
    "dec.model.0.model.{0..3}.model.{0..1}.norm.{running_mean,running_var}",
    "dec.model.0.model.{0..3}.model.{0..1}.conv.{weight,bias}",
    "dec.model.{2,4}.conv.{weight,bias}",
    "dec.model.{2,4}.norm.{gamma,beta}",
    "dec.model.5.conv.{weight,bias}",
    "mlp.model.{0,1,2}.fc.{weight,bias}",
]


def test_reference_names_match_spec():
    sd = to_reference(build_generator(model_preset("munit"), init=False))
    want = {k for p in SPEC_KEYS for k in _expand(p)}
    assert len(want) == 82 and set(sd) == want
    assert sd["enc_style.model.6.weight"].shape == (8, 256, 1, 1)
    assert sd["dec.model.5.conv.weight"].shape == (3, 64, 7, 7)
    assert sd["mlp.model.2.fc.weight"].shape == (4096, 256)


def _reference_files(tmp_path, cfg: ModelConfig, gens, name="gen_00012000.pt", old_torch=False, **yaml_extra):
    """torch.save a reference-layout {'a', 'b'} checkpoint and write its YAML config."""
    ckpt = {}
    for d in "ab":
        sd = to_reference(gens[d])
        if old_torch:  # torch 0.3 instance norms carried running statistics
            sd["enc_content.model.0.norm.running_mean"] = torch.zeros(cfg.gen.dim)
            sd["enc_content.model.0.norm.running_var"] = torch.ones(cfg.gen.dim)
        ckpt[d] = sd
    pt = tmp_path / name
    torch.save(ckpt, pt)
    config = {"image_save_iter": 10000, "lr": 0.0001, "new_size": cfg.image_size, "crop_image_height": cfg.image_size,
              "gen": to_dict(cfg.gen), "dis": to_dict(cfg.dis), **yaml_extra}
    yml = tmp_path / "config.yaml"
    yml.write_text(yaml.safe_dump(config))
    return pt, yml


def _gens(cfg):
    torch.manual_seed(0)
    gens = {d: build_generator(cfg).eval() for d in "ab"}
    with torch.no_grad():  # non-trivial LayerNorm betas so a swapped name would show
        for g in gens.values():
            for m in g.modules():
                if hasattr(m, "beta"):
                    m.beta.normal_()
    return gens


@pytest.mark.parametrize("gen", [None, GenConfig(dim=4, mlp_dim=16, n_downsample=3, n_res=2, activ="prelu")],
                         ids=["tiny", "3down-prelu"])
def test_import_gives_identical_outputs(tmp_path, tiny_cfg, gen):
    cfg = ModelConfig(gen or tiny_cfg.gen, tiny_cfg.dis, image_size=48)
    gens = _gens(cfg)
    pt, yml = _reference_files(tmp_path, cfg, gens, old_torch=True, dis={**to_dict(cfg.dis), "gan_type": "nsgan"})
    out = tmp_path / "imported.safetensors"
    r = runner.invoke(app, ["import-official", str(pt), "--config", str(yml), "--out", str(out), "--names", "dog,cat"])
    assert r.exit_code == 0, r.output
    assert "dis.gan_type" in r.stderr  # unsupported discriminator setting: a warning, not a failure
    assert str(out) in r.stdout and "step 12,000" in r.stdout
    bundle = load_generators(out)
    info = bundle.info
    assert info.kind == "generator" and info.domains == ("dog", "cat") and info.step == 12000
    assert info.model.gen == cfg.gen and info.image_size == 48 and info.model.dis.gan_type == "lsgan"
    x = torch.rand(2, 3, 48, 40) * 2 - 1
    s = torch.randn(2, cfg.gen.style_dim, 1, 1)
    with torch.no_grad():
        for d in "ab":
            c, st = gens[d].encode(x)
            c2, st2 = bundle.gens[d].encode(x)
            assert torch.equal(c, c2) and torch.equal(st, st2)
            assert torch.equal(gens[d].decode(c, s), bundle.gens[d].decode(c2, s))
    r = runner.invoke(app, ["info", str(out), "--json"])
    d = json.loads(r.stdout)
    assert d["provenance"] == "imported from reference checkpoint gen_00012000.pt with config config.yaml"


def test_pickled_custom_class_is_refused(tmp_path, tiny_cfg):
    gens = _gens(tiny_cfg)
    pt, yml = _reference_files(tmp_path, tiny_cfg, gens)
    ckpt = torch.load(pt, weights_only=True)
    ckpt["trainer_state"] = CustomState()
    torch.save(ckpt, pt)
    out = tmp_path / "x.safetensors"
    r = runner.invoke(app, ["import-official", str(pt), "--config", str(yml), "--out", str(out)])
    assert r.exit_code == 1
    err = r.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert "arbitrary unpickling" in err and "refused for safety" in err and "CustomState" in err
    assert not out.exists()


class CustomState:
    """A pickled custom class: loading it would need arbitrary unpickling."""


def test_mismatches_are_named(tmp_path, tiny_cfg):
    gens = _gens(tiny_cfg)
    pt, yml = _reference_files(tmp_path, tiny_cfg, gens)
    ckpt = torch.load(pt, weights_only=True)
    ckpt["b"]["dec.model.5.conv.weight"] = torch.zeros(3, 4, 7, 7)
    torch.save(ckpt, pt)
    out = tmp_path / "x.safetensors"
    r = runner.invoke(app, ["import-official", str(pt), "--config", str(yml), "--out", str(out)])
    assert r.exit_code == 1 and "wrong shape dec.model.5.conv.weight (3, 4, 7, 7)" in r.stderr
    assert "generator 'b'" in r.stderr and not out.exists()
    del ckpt["b"]["dec.model.5.conv.weight"]
    ckpt["a"]["mlp.model.3.fc.weight"] = torch.zeros(2)
    torch.save(ckpt, pt)
    r = runner.invoke(app, ["import-official", str(pt), "--config", str(yml), "--out", str(out)])
    assert r.exit_code == 1 and "unexpected mlp.model.3.fc.weight" in r.stderr


@pytest.mark.parametrize("message, change", [
    ("gen.norm", lambda c: c["gen"].update(norm="bn")),
    ("gen.activ", lambda c: c["gen"].update(activ="gelu")),
    ("gen.n_res", lambda c: c["gen"].pop("n_res")),
    ("new_size", lambda c: c.pop("new_size")),
], ids=["unknown-field", "bad-value", "missing-field", "no-new-size"])
def test_unsupported_config_is_named(tmp_path, tiny_cfg, message, change):
    pt, yml = _reference_files(tmp_path, tiny_cfg, _gens(tiny_cfg))
    config = yaml.safe_load(yml.read_text())
    change(config)
    yml.write_text(yaml.safe_dump(config))
    r = runner.invoke(app, ["import-official", str(pt), "--config", str(yml), "--out", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 1 and r.stderr.startswith("error:") and message in r.stderr


def test_import_usage_errors(tmp_path, tiny_cfg):
    pt, yml = _reference_files(tmp_path, tiny_cfg, _gens(tiny_cfg))
    out = tmp_path / "x.safetensors"
    r = runner.invoke(app, ["import-official", str(pt), "--config", str(yml), "--out", str(out), "--names", "dog"])
    assert r.exit_code == 2 and "--names" in r.stderr
    out.write_text("keep me")
    r = runner.invoke(app, ["import-official", str(pt), "--config", str(yml), "--out", str(out)])
    assert r.exit_code == 1 and "--overwrite" in r.stderr and out.read_text() == "keep me"
    r = runner.invoke(app, ["import-official", str(pt), "--config", str(yml), "--out", str(out), "--overwrite"])
    assert r.exit_code == 0 and parse_info(out).meta["reference_config"] == "config.yaml"
    torch.save({"a": {"model.0.conv.weight": torch.zeros(1)}, "b": {}}, tmp_path / "dis_00012000.pt")
    r = runner.invoke(app, ["import-official", str(tmp_path / "dis_00012000.pt"), "--config", str(yml),
                            "--out", str(tmp_path / "y.safetensors")])
    assert r.exit_code == 1 and "gen_*.pt" in r.stderr
    (tmp_path / "junk.pt").write_text("hello")
    r = runner.invoke(app, ["import-official", str(tmp_path / "junk.pt"), "--config", str(yml),
                            "--out", str(tmp_path / "y.safetensors")])
    assert r.exit_code == 1 and "not a PyTorch checkpoint" in r.stderr
