"""Performance work (issue 6) keeps results faithful: fused layers equal the plain forms, bf16
stays close to fp32, and the benchmark core reports its documented keys. No timing asserts."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from conftest import make_image
from munit_cli.baseline import naive_generators, naive_translate
from munit_cli.benchmark import quick_config, random_bundle, run_bench
from munit_cli.cli import app
from munit_cli.config import TrainConfig, model_preset
from munit_cli.images import load_rgb, to_tensor
from munit_cli.inference import Translator, u8_to_unit
from munit_cli.layers import instance_norm, upsample_conv
from munit_cli.models import random_styles
from munit_cli.runtime import cpu_bf16
from munit_cli.trainer import Trainer


@pytest.fixture
def one_thread():
    """Small models run fastest on one thread (and a busy machine cannot stall a barrier)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two uint8 images (peak 255)."""
    mse = (a.float() - b.float()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "zeros"])
def test_upsample_conv_equals_upsample_then_conv(k, mode):
    """The sub-pixel form of conv(nearest_x2(x)) gives the same values and gradients."""
    torch.manual_seed(k)
    conv = nn.Conv2d(6, 5, k, padding=(k - 1) // 2, padding_mode=mode).double()
    for shape in [(2, 6, 5, 7), (1, 6, 3, 3), (1, 6, 8, 4)]:
        x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        ref = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        got = upsample_conv(x, conv)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(ref)
        want = torch.autograd.grad((ref * g).sum(), [x, conv.weight, conv.bias])
        have = torch.autograd.grad((got * g).sum(), [x, conv.weight, conv.bias])
        for w, h in zip(want, have):
            torch.testing.assert_close(h, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_instance_norm_is_stable_with_large_means(layout, dtype):
    """Statistics stay exact when |mean| >> std (where E[x^2] - E[x]^2 would cancel)."""
    torch.manual_seed(0)
    x = (torch.randn(2, 16, 12, 10) + 300).to(dtype).contiguous(memory_format=layout)
    want = F.instance_norm(x.double(), eps=1e-5)
    err = (instance_norm(x).double() - want).abs().max().item()
    assert err < (1e-4 if dtype == torch.float32 else 0.03), err  # bf16: one rounding of the output


def test_translate_matches_the_plain_baseline(one_thread):
    """Fused upsampling, norms and style batching change nothing visible: fp32 munit-preset
    outputs equal the naive loop with plain layers to within one grey level."""
    bundle = random_bundle("munit")
    x_a = torch.rand(3, 48, 40) * 2 - 1
    s_b = random_styles(3, 8, seed=1)
    g_src, g_tgt = naive_generators(bundle.gens["a"], bundle.gens["b"], torch.device("cpu"))
    plain = naive_translate(g_src, g_tgt, x_a, s_b)  # (3, 3, H, W) float
    ours = u8_to_unit(Translator(bundle, "a", "b", torch.device("cpu")).translate(x_a, s_b))
    assert ours.shape == plain.shape
    assert (ours - plain.clamp(-1, 1)).abs().max().item() <= 1.01 / 127.5


def test_bf16_translate_within_35db_of_fp32(tmp_path, one_thread):
    """Same input and styles through fp32 and bf16 autocast: PSNR >= 35 dB. Small preset at
    32 px: about 1.5 GFLOP of bf16, a second or two even where bf16 is emulated (AVX2 CPUs)."""
    bundle = random_bundle("small")
    x_a = to_tensor(load_rgb(make_image(tmp_path / "in.png", size=(32, 32), seed=3)))
    s_b = random_styles(4, 8, seed=0)
    fp32 = Translator(bundle, "a", "b", torch.device("cpu"), "fp32").translate(x_a, s_b)
    bf16 = Translator(bundle, "a", "b", torch.device("cpu"), "bf16").translate(x_a, s_b)
    assert fp32.shape == bf16.shape == (4, 32, 32, 3)
    assert psnr(bf16, fp32) >= 35, psnr(bf16, fp32)


def _recon_curve(precision: str, x_a: list[torch.Tensor], x_b: list[torch.Tensor], steps: int) -> list[float]:
    tr = Trainer(model_preset("tiny"), TrainConfig(precision=precision, seed=0), torch.device("cpu"))
    curve = []
    for i in range(steps):
        loss = tr.train_step(x_a[i % len(x_a)], x_b[i % len(x_b)])
        curve.append((loss["loss_recon_x_a"] + loss["loss_recon_x_b"]).item())
    return curve


def test_bf16_training_converges_like_fp32(tmp_path, one_thread):
    """Tiny preset, 150 steps on 16 px Pillow images (the least its discriminator takes, so the
    bf16 half stays quick where bf16 is emulated): the image reconstruction loss falls by a
    similar factor in bf16 as in fp32."""
    imgs = [to_tensor(load_rgb(make_image(tmp_path / f"{i}.png", size=(16, 16), seed=i)))[None] for i in range(16)]
    x_a, x_b = imgs[:8], imgs[8:]
    falls = {}
    for p in ("fp32", "bf16"):
        curve = _recon_curve(p, x_a, x_b, 150)
        assert all(math.isfinite(v) for v in curve)
        first, last = sum(curve[:15]) / 15, sum(curve[-15:]) / 15
        falls[p] = last / first
    assert falls["fp32"] < 0.7 and falls["bf16"] < 0.7, falls
    assert abs(math.log(falls["bf16"] / falls["fp32"])) < math.log(1.3), falls


ROW_KEYS = {"variant", "precision", "seconds", "gflop", "gflops", "peak_fraction", "peak_memory_mb", "speedup_vs_naive"}
STAT_KEYS = {"median", "min", "max", "spread_pct", "runs"}


def test_bench_quick_reports_documented_keys():
    """Both CPU precisions asked for explicitly (so the schema is the same on every CPU), tiny
    sizes (quick even where bf16 is emulated)."""
    cfg = replace(quick_config(torch.device("cpu"), "tiny"), threads=1, memory_size=32, translate_size=32,
                  train_sizes=(32,), precisions=("fp32", "bf16"))
    threads, ticks = torch.get_num_threads(), []
    r = run_bench(cfg, lambda what, done, total: ticks.append((done, total)))
    assert ticks and ticks[-1][0] == ticks[-1][1]  # progress reaches its total
    assert {"device", "device_name", "torch", "threads", "preset", "repeats", "load_avg_start", "load_avg_end",
            "settings", "peak", "translate", "train", "memory"} <= set(r)
    assert r["threads"] == 1 and set(r["peak"]) == {"fp32", "bf16"}
    assert all(v["matmul_gflops"] > 0 and v["conv_gflops"] > 0 for v in r["peak"].values())
    assert [(t["variant"], t["precision"]) for t in r["translate"]] == [("naive", "fp32"), ("ours", "fp32"), ("ours", "bf16")]
    for row in r["translate"] + r["train"]:
        assert ROW_KEYS <= set(row) and STAT_KEYS <= set(row["seconds"]) and STAT_KEYS <= set(row["speedup_vs_naive"])
        assert len(row["seconds"]["runs"]) == 2 and row["gflop"] > 0 and row["peak_memory_mb"] > 0
    assert all({"seconds_per_image", "size", "styles"} <= set(t) for t in r["translate"])
    assert all({"iters_per_s", "size", "batch"} <= set(t) for t in r["train"])
    assert r["auto_precision"]["precision"] in ("fp32", "bf16") and r["auto_precision"]["reason"]
    assert r["emulated"] == ([] if cpu_bf16().native else ["bf16"])
    assert r["memory"]["size"] == 32 and r["memory"]["naive_mb"] > 0 and set(r["memory"]["ours_mb"]) == {"fp32", "bf16"}
    json.dumps(r)  # JSON-ready
    assert torch.get_num_threads() == threads  # restored


def test_bench_cli_json_and_bad_options():
    runner = CliRunner()
    r = runner.invoke(app, ["bench", "--quick", "--preset", "tiny", "--threads", "1", "--translate-size", "0",
                            "--sizes", "32", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["translate"] == [] and {row["variant"] for row in out["train"]} == {"naive", "ours"}
    r = runner.invoke(app, ["bench", "--quick", "--preset", "munit", "--sizes", "32"])
    assert r.exit_code == 2 and "at least 64 px" in r.output
    r = runner.invoke(app, ["bench", "--quick", "--device", "cpu", "--precisions", "fp16"])
    assert r.exit_code == 2 and "fp16" in r.output
