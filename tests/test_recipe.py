"""The improved-MUNIT recipe parts (issue 13, SPEC section 6): GAN objectives, spectral norm,
global D, AdaIN upsampling, DiffAugment, schedules, centre crop, EMA start, --init-from, presets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.nn.utils import parametrize
from typer.testing import CliRunner

from conftest import make_domain, make_image
from munit_cli.checkpoint import load_generators, load_tensors, parse_info, save_generators
from munit_cli.cli import app
from munit_cli.config import (DataConfig, ModelConfig, RunConfig, TrainConfig, global_blocks, model_from_json,
                              model_preset, to_dict, train_from_json, train_preset)
from munit_cli.datasets import load_training_image
from munit_cli.diffaugment import DiffAugment, diff_augment, parse_policy
from munit_cli.errors import MunitError
from munit_cli.layers import adain
from munit_cli.losses import dis_loss, gen_adv_loss
from munit_cli.models import build_discriminator, build_generator
from munit_cli.trainer import DisPair, Trainer
from munit_cli.training_run import Options, TrainingRun

runner = CliRunner()
CPU = torch.device("cpu")


def recipe_model(**dis) -> ModelConfig:
    """The tiny preset with every new model option on."""
    m = model_preset("tiny")
    m.gen = dataclasses.replace(m.gen, weight_norm="spectral", up_norm="adain", res_block="pre")
    m.dis = dataclasses.replace(m.dis, **{"weight_norm": "spectral", "kind": "both", "gan_type": "hinge", **dis})
    return m


RECIPE_TRAIN = dict(lr_policy="constant", init="orthogonal", diffaug="color,translation,cutout", center_crop=0.8,
                    ema_start=2, lr_dis=4e-4, recon_x_w=0.1, ds_w=1.0, ds_decay=4, ref_p=0.5)


@pytest.fixture
def pets(tmp_path) -> Path:
    root = tmp_path / "data"
    make_domain(root / "train" / "dog", 6, seed=1)
    make_domain(root / "train" / "cat", 6, seed=2)
    return root


def _cfg(root: Path, model: ModelConfig | None = None, **train) -> RunConfig:
    cfg = RunConfig(model or recipe_model(), train_preset("tiny"), DataConfig("dog", "cat", str(root)))
    for k, v in {**RECIPE_TRAIN, "workers": 0, "precision": "fp32", **train}.items():
        setattr(cfg.train, k, v)
    return cfg


# --- objectives ---------------------------------------------------------------------------

def test_hinge_and_nonsaturating_losses_match_formulas():
    fake = [torch.tensor([[-2.0, 0.5], [1.5, -0.2]]), torch.tensor([[0.3], [-1.1]])]
    real = [torch.tensor([[1.2, 0.4], [-0.7, 2.0]]), torch.tensor([[0.9], [3.0]])]
    hinge_d = sum(torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean() for f, r in zip(fake, real))
    assert torch.allclose(dis_loss(fake, real, "hinge"), hinge_d)
    # by hand for the first output: relu(1 - real) = [0, .6, 1.7, 0], relu(1 + fake) = [0, 1.5, 2.5, .8]
    assert abs(dis_loss(fake[:1], real[:1], "hinge").item() - (2.3 / 4 + 4.8 / 4)) < 1e-6
    assert torch.allclose(gen_adv_loss(fake, "hinge"), -(fake[0].mean() + fake[1].mean()))
    log_sig = lambda t: -torch.log1p(torch.exp(-t))  # noqa: E731  log(sigmoid(t))
    ns_d = sum(-log_sig(r).mean() - torch.log1p(-torch.sigmoid(f)).mean() for f, r in zip(fake, real))
    assert torch.allclose(dis_loss(fake, real, "nonsaturating"), ns_d, atol=1e-6)
    assert torch.allclose(gen_adv_loss(fake, "nonsaturating"), sum(-log_sig(f).mean() for f in fake), atol=1e-6)
    lsgan = sum(f.pow(2).mean() + (r - 1).pow(2).mean() for f, r in zip(fake, real))
    assert torch.allclose(dis_loss(fake, real), lsgan)  # the default is still the paper's
    assert not torch.allclose(dis_loss(fake, real, "hinge"), lsgan)
    with pytest.raises(MunitError, match="dis.gan_type"):
        model_from_json(json.dumps({"dis": {"gan_type": "wgan"}}))


# --- networks -------------------------------------------------------------------------------

def _sn_modules(module):
    return [m for m in module.modules() if parametrize.is_parametrized(m, "weight")]


def test_spectral_norm_bounds_the_largest_singular_value(one_thread):
    torch.manual_seed(0)
    cfg = recipe_model()
    gen, dis = build_generator(cfg, scheme="orthogonal"), build_discriminator(cfg, scheme="orthogonal")
    with torch.no_grad():  # a few training-mode forwards: one power iteration each
        for _ in range(10):
            gen(torch.randn(1, 3, 32, 32))
            dis(torch.randn(1, 3, 32, 32))
    for net, n in ((gen, 14), (dis, 18)):
        mods = _sn_modules(net)
        assert len(mods) == n  # not the MLP, the style projection, the output conv, the global head
        for m in mods:
            w = m.weight.detach().flatten(1)
            assert torch.linalg.svdvals(w).max() <= 1.01
    assert not _sn_modules(gen.mlp) and not _sn_modules(gen.dec.out) and not _sn_modules(dis.glob.classifier)
    plain = build_generator(model_preset("tiny"))
    assert not _sn_modules(plain)
    assert max(torch.linalg.svdvals(m.weight.detach().flatten(1)).max() for m in plain.enc_content.modules()
               if isinstance(m, torch.nn.Conv2d)) > 1.2  # the bound is spectral norm's doing
    gen.eval()  # eval mode: no power iteration, deterministic
    u = {k: v.clone() for k, v in gen.state_dict().items() if k.endswith("_u")}
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(gen(x), gen(x))
    assert all(torch.equal(u[k], v) for k, v in gen.state_dict().items() if k.endswith("_u"))


@pytest.mark.parametrize("size,blocks", [(32, 3), (48, 3), (64, 4)])
def test_global_discriminator_one_score_per_image(size, blocks):
    cfg = model_preset("tiny")
    cfg.image_size, cfg.dis.kind = size, "global"
    dis = build_discriminator(cfg)
    outs = dis(torch.randn(3, 3, size, size))
    assert len(outs) == 1 and outs[0].shape == (3, 1)
    assert global_blocks(size) == blocks and global_blocks(256) == 6 and global_blocks(128) == 5
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in dis.modules()) == blocks
    cfg.dis.kind = "both"  # patch maps (one per scale) and the global score
    shapes = [tuple(o.shape) for o in build_discriminator(cfg)(torch.randn(2, 3, size, size))]
    assert shapes[-1] == (2, 1) and len(shapes) == 1 + cfg.dis.num_scales and len(shapes[0]) == 4


def test_adain_upsampling_layout():
    torch.manual_seed(0)
    cfg = model_preset("tiny")
    cfg.gen.up_norm = "adain"
    gen = build_generator(cfg).eval()
    c = cfg.gen.dim * 4  # 32 channels in the residual blocks, then 16 and 8 in the upsampling convs
    assert gen.dec.param_sizes == [2 * c] * 2 + [2 * 16, 2 * 8]
    assert gen.mlp.model[-1].out_features == 2 * 2 * c + 2 * 16 + 2 * 8
    assert not any("gamma" in k for k in gen.state_dict())  # no LayerNorm left
    paper = build_generator(model_preset("tiny"))
    assert paper.mlp.model[-1].out_features == 2 * 2 * c  # the paper layout is untouched
    content, params = torch.randn(2, c, 4, 4), torch.randn(2, 2 * 2 * c + 48)
    seen = {}
    gen.dec.up[1].register_forward_hook(lambda m, args, out: seen.update(x=args[0], y=out))
    with torch.no_grad():
        gen.dec(content, params)
        n = 4 * c  # the 8 paper slices come first; then up layer 0's mean, then its std
        up = F.conv2d(F.pad(F.interpolate(seen["x"], scale_factor=2.0), (2, 2, 2, 2), mode="reflect"),
                      gen.dec.up[1].conv.weight, gen.dec.up[1].conv.bias)
        want = F.relu(adain(up, params[:, n:n + 16], params[:, n + 16:n + 32]))
    torch.testing.assert_close(seen["y"], want, atol=1e-4, rtol=1e-4)
    swapped = params.clone()
    swapped[:, n:n + 32] = torch.cat([params[:, n + 16:n + 32], params[:, n:n + 16]], 1)
    with torch.no_grad():
        assert not torch.allclose(gen.dec(content, params), gen.dec(content, swapped))


def test_orthogonal_init_gives_unit_adain_stds(tiny_cfg):
    torch.manual_seed(0)
    gen = build_generator(dataclasses.replace(tiny_cfg, gen=dataclasses.replace(tiny_cfg.gen, up_norm="adain")),
                          scheme="orthogonal")
    w = gen.enc_content.model[1].conv.weight.flatten(1)  # (16, 128): orthonormal rows
    torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)
    bias, start = gen.mlp.model[-1].bias, 0
    for size in gen.dec.param_sizes:  # std = 1 + linear map, as imaginaire's AdaIN
        assert (bias[start:start + size // 2] == 0).all() and (bias[start + size // 2:start + size] == 1).all()
        start += size


def test_old_configs_load_with_paper_defaults():
    m = to_dict(model_preset("munit"))
    for k in ("weight_norm", "up_norm", "res_block"):
        del m["gen"][k]
    for k in ("kind", "weight_norm"):
        del m["dis"][k]
    assert model_from_json(json.dumps(m)) == model_preset("munit")
    t = to_dict(TrainConfig())
    for k in ("lr_policy", "init", "diffaug", "center_crop", "ema_start", "init_from"):
        del t[k]
    assert train_from_json(json.dumps(t)) == TrainConfig()


# --- DiffAugment ----------------------------------------------------------------------------

POLICY = "color,translation,cutout"


def _aug(x, seed, policy=POLICY):
    return diff_augment(x, policy, torch.Generator().manual_seed(seed))


def test_diffaugment_is_differentiable_and_the_same_for_real_and_fake():
    torch.manual_seed(0)
    for policy in ("color", "translation", "cutout", POLICY):
        x = torch.randn(4, 3, 16, 12, requires_grad=True)
        y = _aug(x, 1, policy)
        assert y.shape == x.shape and not torch.equal(y, x)
        y.square().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    real, fake = torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)
    # every op is affine per image (T(x) = L x + c): with one draw, real and fake get the same T
    torch.testing.assert_close(_aug(real, 5) - _aug(fake, 5), _aug(real - fake, 5) - _aug(torch.zeros_like(real), 5))
    assert torch.equal(_aug(real, 5), _aug(real, 5))
    assert not torch.allclose(_aug(real, 5), _aug(real, 6))
    y = _aug(torch.ones(64, 1, 8, 8), 2, "translation")  # zero-filled shifts of up to 1 pixel at 8 px
    assert ((y == 0) | (y == 1)).all() and (y == 0).any() and (y.flatten(1).sum(1) >= 8 * 7 * 7 / 8).all()
    y = _aug(torch.ones(16, 1, 8, 8), 2, "cutout")  # a zero square of up to 4x4
    assert ((64 - y.flatten(1).sum(1)) <= 16).all() and (y == 0).any()


def test_diffaugment_policy_errors():
    assert parse_policy("") == () and parse_policy(" color , cutout") == ("color", "cutout")
    with pytest.raises(MunitError, match="'rotate'"):
        parse_policy("color,rotate")
    with pytest.raises(MunitError, match="repeats"):
        parse_policy("color,color")
    with pytest.raises(MunitError, match="diffaug"):
        train_from_json(json.dumps({"diffaug": "flip"}))


def test_dis_pair_augments_reals_and_fakes():
    torch.manual_seed(0)
    cfg = model_preset("tiny")
    dis_a, dis_b = build_discriminator(cfg), build_discriminator(cfg)
    seen = []
    dis_a.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    pair = DisPair(dis_a, dis_b, "hinge", DiffAugment("cutout", torch.Generator().manual_seed(0)))
    x_a, x_ba = torch.rand(2, 3, 32, 32) + 1, torch.rand(2, 3, 32, 32) + 1  # no zeros of their own
    pair(x_a, x_ba, x_a, x_ba)
    assert seen[0].shape == (4, 3, 32, 32)
    assert all((seen[0][i] == 0).any() for i in range(4))  # every fake and every real has its cutout
    pair.judge(dis_a, x_ba)  # the G step's D call goes through the same pipeline
    assert all((seen[1][i] == 0).any() for i in range(2))


# --- training ---------------------------------------------------------------------------------

def test_schedules_and_ema_start(tiny_cfg, one_thread):
    tr = Trainer(tiny_cfg, TrainConfig(lr_policy="constant", lr_step=1, ema_start=3, precision="fp32"), CPU)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    for _ in range(3):
        tr.train_step(x, x)
        assert tr.opt_gen.param_groups[0]["lr"] == 1e-4 and tr.opt_dis.param_groups[0]["lr"] == 1e-4
        assert all(torch.equal(e, p) for e, p in zip(tr.ema_a.parameters(), tr.gen_a.parameters()))
    tr.train_step(x, x)  # step 3: averaging starts
    assert not all(torch.equal(e, p) for e, p in zip(tr.ema_a.parameters(), tr.gen_a.parameters()))
    step = Trainer(tiny_cfg, TrainConfig(lr_step=1, precision="fp32"), CPU)
    step.train_step(x, x)
    step.train_step(x, x)
    assert step.opt_gen.param_groups[0]["lr"] == 0.5e-4  # the paper's step policy halves


def test_diversity_sensitive_loss(tiny_cfg, one_thread):
    torch.manual_seed(0)
    x_a, x_b = torch.rand(2, 1, 3, 32, 32) * 2 - 1
    plain = Trainer(tiny_cfg, TrainConfig(precision="fp32"), CPU)
    drawn = torch.randn(2, 1, 8, 1, 1, generator=torch.Generator().manual_seed(plain.style_rng.initial_seed()))
    assert [torch.equal(s, d) for s, d in zip(plain._styles(1), drawn)] == [True, True]  # off: the old draw
    tr = Trainer(tiny_cfg, TrainConfig(ds_w=2.0, ds_decay=4, precision="fp32"), CPU)
    styles = tr._styles(1)
    assert len(styles) == 4
    out = tr.gens(x_a, x_b, *styles)
    c_b, _ = tr.gen_b.encode(x_b)  # content of b, decoded as a
    assert torch.allclose(out["x_ba2"], tr.gen_a.decode(c_b, styles[2]), atol=1e-5)  # the batched decode is exact
    assert not torch.allclose(out["x_ba2"], out["x_ba"], atol=1e-3)
    L = tr._gen_losses(x_a, x_b, out)
    assert torch.allclose(L["loss_ds_a"], -(out["x_ba"] - out["x_ba2"]).abs().mean())
    without = {k: v for k, v in L.items() if k not in ("loss_ds_a", "loss_ds_b", "loss_gen_total")}
    w = dict(gan=1, recon_x=10, recon_s=1, recon_c=1)
    rest = sum(w[k[5:-2]] * v for k, v in without.items())
    assert torch.allclose(L["loss_gen_total"], rest - 2.0 * (out["x_ba"] - out["x_ba2"]).abs().mean()
                          - 2.0 * (out["x_ab"] - out["x_ab2"]).abs().mean(), atol=1e-5)
    assert [tr.ds_weight() for tr.step in (0, 2, 4, 9)] == [2.0, 1.0, 0.0, 0.0]  # linear decay to 0
    # a gradient step on the loss alone pushes the two styles' outputs apart
    tr.gen_a.zero_grad()
    L["loss_ds_a"].backward()
    with torch.no_grad():
        before = (out["x_ba"] - out["x_ba2"]).abs().mean()
        for p in tr.gen_a.parameters():
            if p.grad is not None:
                p -= 1e-2 * p.grad
        after = (tr.gen_a.decode(c_b, styles[1]) - tr.gen_a.decode(c_b, styles[2])).abs().mean()
    assert after > before


def test_reference_guided_steps(tiny_cfg, one_thread):
    torch.manual_seed(0)
    x_a, x_b = torch.rand(2, 1, 3, 32, 32) * 2 - 1
    schedule = {}
    for p in (0.0, 0.25, 0.5, 1.0):
        tr = Trainer(tiny_cfg, TrainConfig(ref_p=p, precision="fp32"), CPU)
        schedule[p] = [tr.ref_step() for tr.step in range(8)]
    assert schedule[0.0] == [False] * 8 and schedule[1.0] == [True] * 8
    assert schedule[0.5] == [False, True] * 4 and sum(schedule[0.25]) == 2  # evenly spread, no random draw
    with pytest.raises(MunitError, match="ref_p"):
        TrainConfig(ref_p=1.5).validate()

    s_a, s_b = tr._styles(1)
    for ref in (False, True):
        out = tr.gens(x_a, x_b, s_a, s_b, ref=ref)
        c_b, _ = tr.gen_b.encode(x_b)
        _, s_a_real = tr.gen_a.encode(x_a)
        style = s_a_real if ref else s_a  # x_ba: b's content with a's real style, or with the random code
        assert torch.allclose(out["x_ba"], tr.gen_a.decode(c_b, style), atol=1e-5)
        assert torch.allclose(out["s_a_cross"], style)
        L = tr._gen_losses(x_a, x_b, out)
        assert torch.allclose(L["loss_recon_s_a"], (out["s_a_recon"] - style).abs().mean())
        # only a reference step trains a's style encoder through the adversarial loss on x_ba
        tr.gens.zero_grad()
        L["loss_gan_a"].backward()
        grads = [p.grad for p in tr.gen_a.enc_style.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == ref
    # the style target is detached (the encoder must not shrink its codes to ease the loss)
    params = list(tr.gen_a.enc_style.parameters())
    out = tr.gens(x_a, x_b, s_a, s_b, ref=True)
    got = torch.autograd.grad(tr._gen_losses(x_a, x_b, out)["loss_recon_s_a"], params, retain_graph=True)
    want = torch.autograd.grad((out["s_a_recon"] - out["s_a_cross"].detach()).abs().mean(), params, retain_graph=True)
    both = torch.autograd.grad((out["s_a_recon"] - out["s_a_cross"]).abs().mean(), params)
    assert all(torch.allclose(g, w) for g, w in zip(got, want))
    assert not all(torch.allclose(g, b) for g, b in zip(got, both))


def test_center_crop_keeps_the_middle(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (10, 5, 30, 15))  # a blue middle half of each side in a red frame
    img.save(tmp_path / "x.png")
    x = load_training_image(tmp_path / "x.png", 8, torch.Generator().manual_seed(0), center_crop=0.5)
    assert (x[2] > 0.9).all() and (x[0] < -0.9).all()  # all blue
    whole = load_training_image(tmp_path / "x.png", 8, torch.Generator().manual_seed(0))
    assert (whole[0] > 0.9).any()  # some red frame without it


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run_dir / "checkpoints" / "latest.safetensors")


def test_every_option_on_trains_and_resumes_bit_exactly(pets, tmp_path, one_thread):
    straight, half = tmp_path / "straight", tmp_path / "half"
    TrainingRun(straight, _cfg(pets, iters=6, save_every=3), Options(CPU)).run()
    TrainingRun(half, _cfg(pets, iters=3, save_every=3), Options(CPU)).run()
    resumed = TrainingRun(half, _cfg(pets, iters=6, save_every=3), Options(CPU, resume=True, overrides_on_resume={"iters": 6}))
    assert resumed.trainer.step == 3 and resumed.trainer.dis.augment is not None
    resumed.run()
    a, b = _weights(straight), _weights(half)
    assert a.keys() == b.keys() and "rng.diffaug" in a
    assert any(k.endswith("_u") for k in a if k.startswith("gen_a.")) and any(k.startswith("dis_a.glob.") for k in a)
    for k in a.keys() - {"rng.torch"}:  # the global RNG only seeds DataLoader iterators (as in test_train.py)
        assert torch.equal(a[k], b[k]), k
    ema_u = [k for k in a if k.startswith("gen_a_ema.") and k.endswith("_u")]
    assert ema_u and all(torch.equal(a[k], a[k.replace("gen_a_ema.", "gen_a.")]) for k in ema_u)  # EMA follows u
    rows = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(v)) for r in rows for v in r.values() if isinstance(v, float))
    info = parse_info(straight / "checkpoints" / "latest.safetensors")
    assert info.model == recipe_model() and info.train.diffaug == POLICY and json.loads(info.meta["scheduler"])["type"] == "constant"


def test_spectral_norm_model_exports_and_translates(tmp_path, tiny_cfg):
    torch.manual_seed(0)
    cfg = recipe_model()
    gens = {d: build_generator(cfg, scheme="orthogonal") for d in "ab"}
    with torch.no_grad():
        for g in gens.values():
            g(torch.randn(1, 3, 32, 32))  # move u, v away from their registration values
    src = tmp_path / "sn.safetensors"
    save_generators(src, cfg, {d: g.eval() for d, g in gens.items()}, ("dog", "cat"), 3)
    half = tmp_path / "half.safetensors"
    r = runner.invoke(app, ["export", str(src), "--out", str(half), "--dtype", "float16"])
    assert r.exit_code == 0, r.output
    x, s = torch.rand(1, 3, 32, 32) * 2 - 1, torch.randn(1, 8, 1, 1)
    with torch.no_grad():
        want = gens["b"].decode(gens["a"].enc_content(x), s)
        b = load_generators(src)
        assert torch.equal(b.gens["b"].decode(b.gens["a"].enc_content(x), s), want)
        h = load_generators(half)
        assert (h.gens["b"].float().decode(h.gens["a"].float().enc_content(x), s) - want).abs().max() < 0.05
    img = make_image(tmp_path / "dog.png", size=(40, 36), seed=1)
    r = runner.invoke(app, ["translate", str(img), "--model", str(half), "--outdir", str(tmp_path / "o"), "-n", "2",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "o").rglob("*.png"))) == 2
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    r = runner.invoke(app, ["export", str(src), "--out", str(tmp_path / "onnx"), "--format", "onnx",
                            "--direction", "a2b", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["max_abs_diff_vs_pytorch"] < 1e-4


# --- --init-from ------------------------------------------------------------------------------

def test_init_from_loads_weights_and_refuses_another_architecture(pets, tmp_path, one_thread):
    src_run = tmp_path / "src"
    TrainingRun(src_run, _cfg(pets, iters=2, save_every=2), Options(CPU)).run()
    ckpt = src_run / "checkpoints" / "latest.safetensors"
    run = TrainingRun(tmp_path / "warm", _cfg(pets, iters=1, init_from=str(src_run), seed=5), Options(CPU))
    tr, t = run.trainer, load_tensors(ckpt)
    assert tr.step == 0 and not tr.opt_gen.state and not tr.opt_dis.state
    for name in ("gen_a", "gen_b", "dis_a", "dis_b"):
        own = getattr(tr, name).state_dict()
        assert all(torch.equal(v, t[f"{name}.{k}"]) for k, v in own.items()), name
    assert all(torch.equal(v, t[f"gen_b_ema.{k}"]) for k, v in tr.ema_b.state_dict().items())
    src = load_generators(ckpt, prefer_ema=False)
    x, s = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 8, 1, 1)
    with torch.no_grad():  # the warm-started nets compute what the source's do
        gen_a = tr.gen_a.eval()
        assert torch.equal(gen_a.decode(gen_a.enc_content(x), s), src.gens["a"].decode(src.gens["a"].enc_content(x), s))
    run.run()
    after = _weights(tmp_path / "warm")
    k = "gen_a_ema.dec.out.conv.weight"  # warm start: the EMA moves at the full beta (0.999) from step 0
    moved, live = (after[k] - t[k]).abs().sum(), (after["gen_a.dec.out.conv.weight"] - t[k]).abs().sum()
    assert 0 < moved < 0.01 * live
    info = parse_info(tmp_path / "warm" / "checkpoints" / "latest.safetensors")
    assert info.step == 1 and info.train.init_from == str(ckpt.resolve()) and "training, step 2" in info.meta["init_from"]
    assert json.loads((tmp_path / "warm" / "config.json").read_text())["train"]["init_from"] == str(ckpt.resolve())
    # a generator export (no D, no EMA tensors): the live nets and their EMA copies both start from it
    export = tmp_path / "g.safetensors"
    save_generators(export, recipe_model(), {d: g for d, g in load_generators(ckpt).gens.items()}, ("dog", "cat"), 2)
    tr = TrainingRun(tmp_path / "warm2", _cfg(pets, init_from=str(export)), Options(CPU)).trainer
    e = load_tensors(export)
    assert all(torch.equal(v, e[f"gen_a.{k}"]) for k, v in tr.ema_a.state_dict().items())
    assert all(torch.equal(v, e[f"gen_a.{k}"]) for k, v in tr.gen_a.state_dict().items())
    other = recipe_model()
    other.gen.dim = 4
    with pytest.raises(MunitError, match=r"gen\.dim 8 != 4"):
        TrainingRun(tmp_path / "bad", _cfg(pets, model=other, init_from=str(ckpt)), Options(CPU))
    other = recipe_model(kind="patch")  # the file has a global D: its D must match too
    with pytest.raises(MunitError, match=r"dis\.kind 'both' != 'patch'"):
        TrainingRun(tmp_path / "bad2", _cfg(pets, model=other, init_from=str(ckpt)), Options(CPU))
    other = recipe_model(gan_type="nonsaturating")  # the loss is not the architecture
    TrainingRun(tmp_path / "ok", _cfg(pets, model=other, init_from=str(ckpt)), Options(CPU))


def test_init_from_cli(pets, tmp_path, tiny_gen_ckpt):
    base = ["train", "--data", str(pets), "--src", "dog", "--tgt", "cat", "--preset", "tiny", "--device", "cpu"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "r"), "--resume", "--init-from", str(tiny_gen_ckpt)])
    assert r.exit_code == 2 and "--init-from" in r.stderr and "--resume" in r.stderr
    r = runner.invoke(app, [*base, "--dry-run", "--init-from", str(tiny_gen_ckpt), "--up-norm", "adain"])
    assert r.exit_code == 2 and "gen.up_norm 'ln' != 'adain'" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, [*base, "--dry-run", "--init-from", str(tiny_gen_ckpt)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["config"]["train"]["init_from"] == str(tiny_gen_ckpt)


def test_recipe_flags_reach_the_config(pets):
    r = runner.invoke(app, ["train", "--data", str(pets), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--device", "cpu", "--dry-run", "--gan-type", "nonsaturating", "--dis-kind", "global",
                            "--gen-weight-norm", "spectral", "--dis-weight-norm", "spectral", "--up-norm", "adain",
                            "--res-block", "pre", "--lr-policy", "constant", "--init", "orthogonal",
                            "--diffaug", "translation,cutout", "--center-crop", "0.7", "--ema-start", "50",
                            "--ds-w", "0.5", "--ds-decay", "300", "--n-downsample", "3", "--ref-p", "0.25"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["config"]
    assert (c["model"]["dis"]["gan_type"], c["model"]["dis"]["kind"], c["model"]["dis"]["weight_norm"]) == \
        ("nonsaturating", "global", "spectral")
    assert (c["model"]["gen"]["weight_norm"], c["model"]["gen"]["up_norm"], c["model"]["gen"]["res_block"],
            c["model"]["gen"]["n_downsample"]) == ("spectral", "adain", "pre", 3)
    t = c["train"]
    assert (t["lr_policy"], t["init"], t["diffaug"], t["center_crop"], t["ema_start"]) == \
        ("constant", "orthogonal", "translation,cutout", 0.7, 50)
    assert (t["ds_w"], t["ds_decay"], t["ref_p"]) == (0.5, 300, 0.25)
    r = runner.invoke(app, ["train", "--data", str(pets), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--device", "cpu", "--dry-run", "--diffaug", "colour"])
    assert r.exit_code == 1 and "diffaug" in r.stderr and "Traceback" not in r.output


def test_animals_preset_trains(pets, tmp_path, one_thread):
    m, t = model_preset("animals"), train_preset("animals")
    assert (m.dis.gan_type, m.dis.kind, m.dis.weight_norm, m.gen.weight_norm, m.gen.up_norm, m.gen.res_block) == \
        ("hinge", "global", "spectral", "spectral", "adain", "pre")
    assert (m.gen.dim, m.image_size, t.lr, t.lr_dis, t.lr_policy, t.recon_x_w, t.recon_c_w, t.recon_s_w) == \
        (32, 128, 1e-4, 4e-4, "constant", 0.1, 1.0, 1.0)
    assert (t.recon_x_cyc_w, t.vgg_w, t.init, t.ema, t.ema_start, t.weight_decay) == (0, 0, "orthogonal", True, 1000, 0)
    assert model_preset("munit") == ModelConfig() and train_preset("munit") == TrainConfig()  # the paper unchanged
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(pets), "--src", "dog", "--tgt", "cat", "--preset", "animals",
                            "--image-size", "32", "--iters", "2", "--log-every", "1", "--workers", "0",
                            "--precision", "fp32", "--out", str(run_dir), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(row["loss_dis_a"])) for row in rows)
    info = parse_info(run_dir / "checkpoints" / "latest.safetensors")
    assert info.model.dis.kind == "global" and info.model.image_size == 32
