"""Faithfulness to SPEC section 2: counts, AdaIN layout, LayerNorm form, sizes."""

import pytest
import torch
import torch.nn.functional as F

from munit_cli.config import model_preset
from munit_cli.layers import LayerNorm
from munit_cli.models import build_discriminator, build_generator, count_params, output_size


def test_parameter_counts_match_spec():
    cfg = model_preset("munit")
    gen, dis = build_generator(cfg), build_discriminator(cfg)
    assert count_params(gen) == 15_026_187
    assert count_params(gen.enc_style) == 2_764_936
    assert count_params(gen.enc_content) == 5_385_856
    assert count_params(gen.dec) == 5_754_627
    assert count_params(gen.mlp) == 1_120_768
    assert count_params(dis) == 8_271_171
    assert all(count_params(c) == 2_757_057 for c in dis.cnns)
    assert 2 * count_params(gen) + 2 * count_params(dis) == 46_594_716


def test_adain_slice_layout_mean_then_std():
    """Feed a hand-made MLP output: layer k must use [512k, 512k+256) as mean, next 256 as std."""
    torch.manual_seed(0)
    cfg = model_preset("munit")
    gen = build_generator(cfg).eval()
    content = torch.randn(1, 256, 8, 8)
    params = torch.randn(1, 4096)
    # hand computation of the first residual block with the reference layout
    blk = gen.dec.res[0]

    def ada(x, k):
        mean, std = params[:, 512 * k: 512 * k + 256], params[:, 512 * k + 256: 512 * k + 512]
        mu = x.mean((2, 3), keepdim=True)
        var = x.var((2, 3), unbiased=False, keepdim=True)
        return std[:, :, None, None] * (x - mu) / torch.sqrt(var + 1e-5) + mean[:, :, None, None]

    h = F.relu(ada(blk.conv1.conv(content), 0))
    expected = content + ada(blk.conv2.conv(h), 1)
    p = params.view(1, 8, 2, 256)
    got = blk(content, [(p[:, 0, 0], p[:, 0, 1]), (p[:, 1, 0], p[:, 1, 1])])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # and the decoder's own slicing routes the same slices to block 0 (whole decode matches)
    x = content
    for r, b in enumerate(gen.dec.res):
        def ada_r(k):
            return (params[:, 512 * k: 512 * k + 256], params[:, 512 * k + 256: 512 * k + 512])
        x = b(x, [ada_r(2 * r), ada_r(2 * r + 1)])
    torch.testing.assert_close(gen.dec(content, params), gen.dec.out(gen.dec.up(x)))
    # swapping halves gives a different image (the layout matters)
    swapped = params.view(1, 8, 2, 256).flip(2).reshape(1, 4096)
    assert not torch.allclose(gen.dec(content, params), gen.dec(content, swapped))


def test_layernorm_reference_form():
    torch.manual_seed(0)
    ln = LayerNorm(4)
    x = torch.randn(2, 4, 5, 3) * 3 + 1
    flat = x.view(2, -1)
    mean = flat.mean(1).view(2, 1, 1, 1)
    std = flat.std(1, unbiased=True).view(2, 1, 1, 1)
    expected = (x - mean) / (std + 1e-5) * ln.gamma.view(1, 4, 1, 1) + ln.beta.view(1, 4, 1, 1)
    torch.testing.assert_close(ln(x), expected)
    assert (ln.gamma >= 0).all() and (ln.gamma < 1).all() and (ln.beta == 0).all()
    # not the biased-variance / eps-in-sqrt form
    biased = (x - mean) / torch.sqrt(flat.var(1, unbiased=False).view(2, 1, 1, 1) + 1e-5)
    assert not torch.allclose(ln(x), biased * ln.gamma.view(1, 4, 1, 1))


@pytest.mark.parametrize("h,w", [(33, 47), (64, 64), (18, 21)])
def test_output_sizes(h, w):
    cfg = model_preset("tiny")
    gen = build_generator(cfg).eval()
    with torch.no_grad():
        c, s = gen.encode(torch.randn(1, 3, h, w))
        y = gen.decode(c, s)
    assert s.shape == (1, 8, 1, 1)
    assert y.shape == (1, 3, output_size(h, 2), output_size(w, 2))
    assert y.shape[-2:] == (4 * (h // 2 // 2), 4 * (w // 2 // 2))
    assert y.abs().max() <= 1


def test_decode_is_reentrant():
    """Two decodes with different styles in one graph equal two separate decodes."""
    torch.manual_seed(0)
    gen = build_generator(model_preset("tiny"))
    c = torch.randn(2, 32, 8, 8, requires_grad=True)
    s1, s2 = torch.randn(2, 8, 1, 1), torch.randn(2, 8, 1, 1)
    y1, y2 = gen.decode(c, s1), gen.decode(c, s2)
    (y1.sum() + y2.sum()).backward()
    with torch.no_grad():
        torch.testing.assert_close(y1, gen.decode(c, s1))
        torch.testing.assert_close(y2, gen.decode(c, s2))
    assert not torch.allclose(y1, y2)


def test_discriminator_scales():
    dis = build_discriminator(model_preset("munit"))
    outs = dis(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 1, 4, 4), (1, 1, 2, 2), (1, 1, 1, 1)]


def test_init_statistics():
    torch.manual_seed(0)
    cfg = model_preset("munit")
    gen, dis = build_generator(cfg), build_discriminator(cfg)
    w = gen.enc_content.model[1].conv.weight  # 4x4 64->128, fan_in 1024
    assert abs(w.std().item() - (2 / 1024) ** 0.5) < 0.002
    assert (gen.enc_content.model[1].conv.bias == 0).all()
    dw = dis.cnns[0].model[1].conv.weight
    assert abs(dw.std().item() - 0.02) < 0.001
