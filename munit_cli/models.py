"""MUNIT networks (SPEC section 2): encoders, decoder, generator, multi-scale discriminator.

Glossary (paper -> code):  x_a, x_b images in [-1, 1];  E^c_a -> gen_a.enc_content;
E^s_a -> gen_a.enc_style;  G_a -> gen_a.decode;  c_a, s_a = gen_a.encode(x_a);
x_ab = gen_b.decode(c_a, s_b);  D_a -> dis_a.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from munit_cli.config import DisConfig, GenConfig, ModelConfig
from munit_cli.layers import MLP, ConvBlock, ResBlock

STYLE_DOWNSAMPLE = 4  # the reference always downsamples 4 times in the style encoder


class ContentEncoder(nn.Module):
    """image (B, 3, H, W) -> content code (B, dim * 2^n_down, H / 2^n_down, W / 2^n_down)."""

    def __init__(self, cfg: GenConfig):
        super().__init__()
        dim = cfg.dim
        layers: list[nn.Module] = [ConvBlock(3, dim, 7, 1, "in", cfg.activ, cfg.pad_type)]
        for _ in range(cfg.n_downsample):
            layers.append(ConvBlock(dim, dim * 2, 4, 2, "in", cfg.activ, cfg.pad_type))
            dim *= 2
        layers += [ResBlock(dim, "in", cfg.activ, cfg.pad_type) for _ in range(cfg.n_res)]
        self.model = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class StyleEncoder(nn.Module):
    """image (B, 3, H, W) -> style code (B, style_dim, 1, 1). No normalisation: IN would
    remove exactly the statistics that carry style."""

    def __init__(self, cfg: GenConfig):
        super().__init__()
        dim = cfg.dim
        layers: list[nn.Module] = [ConvBlock(3, dim, 7, 1, "none", cfg.activ, cfg.pad_type)]
        for i in range(STYLE_DOWNSAMPLE):
            out = dim * 2 if i < 2 else dim  # channels double twice, then stay
            layers.append(ConvBlock(dim, out, 4, 2, "none", cfg.activ, cfg.pad_type))
            dim = out
        self.model = nn.Sequential(*layers)
        self.proj = nn.Conv2d(dim, cfg.style_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.model(x)
        h = h.mean(dim=(2, 3), keepdim=True)  # global average pooling, (B, C, 1, 1)
        return self.proj(h)


class Decoder(nn.Module):
    """(content, AdaIN params) -> image: AdaIN residual blocks, upsampling with LayerNorm, tanh."""

    def __init__(self, cfg: GenConfig, dim: int):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(dim, "adain", cfg.activ, cfg.pad_type) for _ in range(cfg.n_res))
        ups: list[nn.Module] = []
        for _ in range(cfg.n_downsample):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"),
                    ConvBlock(dim, dim // 2, 5, 1, "ln", cfg.activ, cfg.pad_type)]
            dim //= 2
        self.up = nn.Sequential(*ups)
        self.out = ConvBlock(dim, 3, 7, 1, "none", "tanh", cfg.pad_type)
        self.adain_dim = cfg.dim * 2 ** cfg.n_downsample
        self.num_adain = 2 * cfg.n_res  # AdaIN layers, in decoder order

    def forward(self, content: Tensor, adain_params: Tensor) -> Tensor:
        # adain_params: (B, num_adain * 2 * C). Layer k uses [2kC, 2kC + C) as the mean (bias)
        # and [2kC + C, 2kC + 2C) as the std (weight): the reference layout (SPEC section 2).
        c = self.adain_dim
        p = adain_params.view(adain_params.shape[0], self.num_adain, 2, c)
        x = content
        for r, block in enumerate(self.res):
            x = block(x, [(p[:, 2 * r, 0], p[:, 2 * r, 1]), (p[:, 2 * r + 1, 0], p[:, 2 * r + 1, 1])])
        # self.up holds (Upsample, ConvBlock) pairs (the reference's layout and weight names);
        # each block applies its upsampling itself, on the low-res grid (layers.upsample_conv)
        for block in self.up[1::2]:
            x = block(x, upsample=True)
        return self.out(x)


class Generator(nn.Module):
    """One domain's auto-encoder: encode(x) -> (content, style); decode(content, style) -> x."""

    def __init__(self, cfg: GenConfig):
        super().__init__()
        self.cfg = cfg
        self.enc_style = StyleEncoder(cfg)
        self.enc_content = ContentEncoder(cfg)
        self.dec = Decoder(cfg, self.enc_content.out_dim)
        self.mlp = MLP(cfg.style_dim, self.dec.num_adain * 2 * self.dec.adain_dim, cfg.mlp_dim, cfg.activ)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.enc_content(x), self.enc_style(x)

    def decode(self, content: Tensor, style: Tensor) -> Tensor:
        """content (B, C, h, w), style (B, style_dim[, 1, 1]) -> image (B, 3, 4h, 4w)."""
        return self.dec(content, self.mlp(style))

    def forward(self, x: Tensor) -> Tensor:
        """Within-domain reconstruction, x -> G(Ec(x), Es(x))."""
        c, s = self.encode(x)
        return self.decode(c, s)


class PatchDiscriminator(nn.Module):
    """4x4 stride-2 convs with LeakyReLU and no norm, then a 1x1 conv to one logit per patch."""

    def __init__(self, cfg: DisConfig):
        super().__init__()
        dim = cfg.dim
        layers: list[nn.Module] = [ConvBlock(3, dim, 4, 2, "none", cfg.activ, cfg.pad_type)]
        for _ in range(cfg.n_layer - 1):
            layers.append(ConvBlock(dim, dim * 2, 4, 2, "none", cfg.activ, cfg.pad_type))
            dim *= 2
        layers.append(nn.Conv2d(dim, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class MultiScaleDiscriminator(nn.Module):
    """`num_scales` PatchGANs on the image at full, 1/2, 1/4 ... resolution."""

    def __init__(self, cfg: DisConfig):
        super().__init__()
        self.cfg = cfg
        self.cnns = nn.ModuleList(PatchDiscriminator(cfg) for _ in range(cfg.num_scales))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, cnn in enumerate(self.cnns):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(cnn(x))
        return outs


def init_generator(gen: nn.Module) -> None:
    """Kaiming-normal (fan_in, a=0) for convs and linears, zero biases (the reference's
    'kaiming' init). LayerNorm gamma keeps its U[0, 1) draw."""
    for m in gen.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            nn.init.zeros_(m.bias)


def init_discriminator(dis: nn.Module) -> None:
    """N(0, 0.02) weights, zero biases (the reference's 'gaussian' init)."""
    for m in dis.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


def build_generator(cfg: ModelConfig, init: bool = True) -> Generator:
    gen = Generator(cfg.gen)
    if init:
        init_generator(gen)
    return gen


def build_discriminator(cfg: ModelConfig, init: bool = True) -> MultiScaleDiscriminator:
    dis = MultiScaleDiscriminator(cfg.dis)
    if init:
        init_discriminator(dis)
    return dis


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def output_size(h: int, n_downsample: int) -> int:
    """Height the generator returns for input height h (floor division at each stride-2 conv)."""
    for _ in range(n_downsample):
        h //= 2
    return h * 2 ** n_downsample


@torch.no_grad()
def random_styles(n: int, style_dim: int, seed: int, truncation: float = 1.0) -> Tensor:
    """n codes from N(0, I) drawn on the CPU from `seed`, so every device gets the same codes."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, style_dim, 1, 1, generator=g) * truncation
