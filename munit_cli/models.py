"""MUNIT networks (SPEC section 2): encoders, decoder, generator, multi-scale discriminator,
and the improved recipe's global residual discriminator (SPEC section 6).

Glossary (paper -> code):  x_a, x_b images in [-1, 1];  E^c_a -> gen_a.enc_content;
E^s_a -> gen_a.enc_style;  G_a -> gen_a.decode;  c_a, s_a = gen_a.encode(x_a);
x_ab = gen_b.decode(c_a, s_b);  D_a -> dis_a.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from munit_cli.config import DisConfig, GenConfig, ModelConfig, global_blocks
from munit_cli.layers import MLP, ConvBlock, ResBlock, apply_spectral_norm, plain

STYLE_DOWNSAMPLE = 4  # the reference always downsamples 4 times in the style encoder
GLOBAL_MAX_DIM = 512  # channel cap of the global discriminator (imaginaire's max_num_filters)


class ContentEncoder(nn.Module):
    """image (B, 3, H, W) -> content code (B, dim * 2^n_down, H / 2^n_down, W / 2^n_down)."""

    def __init__(self, cfg: GenConfig):
        super().__init__()
        dim = cfg.dim
        layers: list[nn.Module] = [ConvBlock(3, dim, 7, 1, "in", cfg.activ, cfg.pad_type)]
        for _ in range(cfg.n_downsample):
            layers.append(ConvBlock(dim, dim * 2, 4, 2, "in", cfg.activ, cfg.pad_type))
            dim *= 2
        layers += [ResBlock(dim, "in", cfg.activ, cfg.pad_type, cfg.res_block == "pre") for _ in range(cfg.n_res)]
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
        self.proj = plain(nn.Conv2d(dim, cfg.style_dim, 1))  # no spectral norm (as imaginaire)

    def forward(self, x: Tensor) -> Tensor:
        h = self.model(x)
        h = h.mean(dim=(2, 3), keepdim=True)  # global average pooling, (B, C, 1, 1)
        return self.proj(h)


class Decoder(nn.Module):
    """(content, AdaIN params) -> image: AdaIN residual blocks, upsampling with LayerNorm (or
    AdaIN with `up_norm="adain"`), tanh."""

    def __init__(self, cfg: GenConfig, dim: int):
        super().__init__()
        pre = cfg.res_block == "pre"
        self.res = nn.ModuleList(ResBlock(dim, "adain", cfg.activ, cfg.pad_type, pre) for _ in range(cfg.n_res))
        ups: list[nn.Module] = []
        self.up_dims: list[int] = []  # output channels of the upsampling convs that take AdaIN parameters
        for _ in range(cfg.n_downsample):
            ups += [nn.Upsample(scale_factor=2, mode="nearest"),
                    ConvBlock(dim, dim // 2, 5, 1, cfg.up_norm, cfg.activ, cfg.pad_type)]
            dim //= 2
            if cfg.up_norm == "adain":
                self.up_dims.append(dim)
        self.up = nn.Sequential(*ups)
        self.out = ConvBlock(dim, 3, 7, 1, "none", "tanh", cfg.pad_type)
        plain(self.out.conv)  # no spectral norm on the output layer (as imaginaire)
        self.adain_dim = cfg.dim * 2 ** cfg.n_downsample
        self.num_adain = 2 * cfg.n_res  # AdaIN layers of the residual blocks, in decoder order

    @property
    def param_sizes(self) -> list[int]:
        """Width (2 C: mean then std) of each AdaIN layer's slice of the parameters, in order."""
        return [2 * self.adain_dim] * self.num_adain + [2 * c for c in self.up_dims]

    def forward(self, content: Tensor, adain_params: Tensor) -> Tensor:
        # adain_params: (B, sum(param_sizes)). Residual layer k uses [2kC, 2kC + C) as the mean
        # (bias) and [2kC + C, 2kC + 2C) as the std (weight): the reference layout (SPEC
        # section 2). With up_norm adain, the upsampling convs' (mean, std) pairs follow.
        c = self.adain_dim
        n = self.num_adain * 2 * c
        p = adain_params[:, :n].view(adain_params.shape[0], self.num_adain, 2, c)
        x = content
        for r, block in enumerate(self.res):
            x = block(x, [(p[:, 2 * r, 0], p[:, 2 * r, 1]), (p[:, 2 * r + 1, 0], p[:, 2 * r + 1, 1])])
        # self.up holds (Upsample, ConvBlock) pairs (the reference's layout and weight names);
        # each block applies its upsampling itself, on the low-res grid (layers.upsample_conv)
        for j, block in enumerate(self.up[1::2]):
            if self.up_dims:
                cj = self.up_dims[j]
                x = block(x, adain_params[:, n:n + cj], adain_params[:, n + cj:n + 2 * cj], upsample=True)
                n += 2 * cj
            else:
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
        self.mlp = MLP(cfg.style_dim, sum(self.dec.param_sizes), cfg.mlp_dim, cfg.activ)
        for m in self.mlp.modules():  # the MLP emits AdaIN scales: spectral norm would shrink them
            plain(m)

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


class PreActResBlock(nn.Module):
    """LeakyReLU -> conv3x3 -> LeakyReLU -> conv3x3 (hidden = min(cin, cout) channels), plus
    the input, through a 1x1 conv when the channel count changes."""

    def __init__(self, cin: int, cout: int, pad_type: str):
        super().__init__()
        hidden = min(cin, cout)
        self.conv1 = ConvBlock(cin, hidden, 3, 1, "none", "none", pad_type)
        self.conv2 = ConvBlock(hidden, cout, 3, 1, "none", "none", pad_type)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.leaky_relu(x, 0.2))  # not in place: x is still needed for the skip
        h = self.conv2(F.leaky_relu(h, 0.2, inplace=True))
        return h + (x if self.skip is None else self.skip(x))


class GlobalDiscriminator(nn.Module):
    """SPEC section 6: 1x1 conv, pre-activation residual blocks each followed by 2x2 average
    pooling (channels doubling from cfg.dim up to 512) until the map is 4 to 7 pixels, a 4x4
    valid conv and a linear layer: one score per image, (B, 1)."""

    def __init__(self, cfg: DisConfig, image_size: int):
        super().__init__()
        dim = cfg.dim
        layers: list[nn.Module] = [ConvBlock(3, dim, 1, 1, "none", cfg.activ, cfg.pad_type)]
        for _ in range(global_blocks(image_size)):
            out = min(2 * dim, GLOBAL_MAX_DIM)
            layers += [PreActResBlock(dim, out, cfg.pad_type), nn.AvgPool2d(2)]
            dim = out
        self.model = nn.Sequential(*layers)
        self.head = plain(nn.Conv2d(dim, dim, 4))  # as imaginaire: no spectral norm on the last two layers
        self.classifier = plain(nn.Linear(dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = F.leaky_relu(self.head(self.model(x)), 0.2)  # (B, C, 1, 1) at 4 * 2^n pixels
        return self.classifier(h.mean(dim=(2, 3)))  # (B, 1)


class MultiScaleDiscriminator(nn.Module):
    """`num_scales` PatchGANs on the image at full, 1/2, 1/4 ... resolution (kind `patch`),
    a global residual discriminator (`global`), or both; a list of outputs either way."""

    def __init__(self, cfg: DisConfig, image_size: int = 256):
        super().__init__()
        self.cfg = cfg
        n = cfg.num_scales if cfg.kind in ("patch", "both") else 0
        self.cnns = nn.ModuleList(PatchDiscriminator(cfg) for _ in range(n))
        self.glob = GlobalDiscriminator(cfg, image_size) if cfg.kind in ("global", "both") else None

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        h = x
        for i, cnn in enumerate(self.cnns):
            if i:
                h = F.avg_pool2d(h, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(cnn(h))
        if self.glob is not None:
            outs.append(self.glob(x))
        return outs


def init_orthogonal(module: nn.Module) -> None:
    """imaginaire's init: orthogonal weights (gain 1) for every conv and linear, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(m.weight)
            nn.init.zeros_(m.bias)


def init_generator(gen: Generator, scheme: str = "reference") -> None:
    """`reference`: kaiming-normal (fan_in, a=0) for convs and linears, zero biases (the
    reference's 'kaiming' init). `orthogonal`: imaginaire's, where each AdaIN layer has its own
    linear map of the MLP feature and computes its std as 1 + output: so the MLP's last layer is
    initialised per AdaIN slice and the std biases start at 1. LayerNorm gamma keeps its U[0, 1) draw."""
    if scheme == "orthogonal":
        init_orthogonal(gen)
        last, start = gen.mlp.model[-1], 0
        with torch.no_grad():
            for size in gen.dec.param_sizes:  # [mean (C) | std (C)] per AdaIN layer
                nn.init.orthogonal_(last.weight[start:start + size])
                last.bias[start + size // 2:start + size] = 1.0
                start += size
        return
    for m in gen.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            nn.init.zeros_(m.bias)


def init_discriminator(dis: nn.Module, scheme: str = "reference") -> None:
    """`reference`: N(0, 0.02) weights, zero biases (the reference's 'gaussian' init). `orthogonal`: gain 1."""
    if scheme == "orthogonal":
        return init_orthogonal(dis)
    for m in dis.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)


def build_generator(cfg: ModelConfig, init: bool = True, scheme: str = "reference") -> Generator:
    """The generator of `cfg`, initialised with `scheme` (else left for a checkpoint to fill)."""
    gen = Generator(cfg.gen)
    if init:
        init_generator(gen, scheme)
    if cfg.gen.weight_norm == "spectral":
        apply_spectral_norm(gen)
    return gen


def build_discriminator(cfg: ModelConfig, init: bool = True, scheme: str = "reference") -> MultiScaleDiscriminator:
    dis = MultiScaleDiscriminator(cfg.dis, cfg.image_size)
    if init:
        init_discriminator(dis, scheme)
    if cfg.dis.weight_norm == "spectral":
        apply_spectral_norm(dis)
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
