"""Building blocks of MUNIT: conv block, residual blocks, AdaIN, the reference LayerNorm, MLP.

AdaIN parameters are passed functionally (never stored on modules), so a decoder can be
called twice in one graph, under DDP or under torch.compile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-5


def make_activation(name: str) -> nn.Module:
    return {
        "relu": lambda: nn.ReLU(inplace=True),
        "lrelu": lambda: nn.LeakyReLU(0.2, inplace=True),
        "prelu": nn.PReLU,
        "selu": lambda: nn.SELU(inplace=True),
        "tanh": nn.Tanh,
        "none": nn.Identity,
    }[name]()


def adain(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Adaptive instance norm: normalise per (sample, channel) over H, W with biased
    variance and eps inside the sqrt, then scale by `std` and shift by `mean` (both (B, C)).
    """
    # Statistics in fp32: bf16 means over thousands of pixels lose too many digits.
    y = F.instance_norm(x.float(), eps=EPS).to(x.dtype)
    return y * std[:, :, None, None].to(x.dtype) + mean[:, :, None, None].to(x.dtype)


class LayerNorm(nn.Module):
    """The reference implementation's LayerNorm (not torch's): per-sample statistics over
    (C, H, W), **unbiased** std, eps added to the std, per-channel affine.
    Used in the decoder's upsampling blocks, where IN would erase the style just applied.
    """

    def __init__(self, num_features: int, eps: float = EPS):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.empty(num_features).uniform_())  # U[0, 1) as the reference
        self.beta = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.float().flatten(1)  # (B, C*H*W)
        mean = flat.mean(1).view(-1, 1, 1, 1)
        std = flat.std(1).view(-1, 1, 1, 1)  # unbiased, as the reference
        y = ((x.float() - mean) / (std + self.eps)).to(x.dtype)
        return y * self.gamma.view(1, -1, 1, 1).to(x.dtype) + self.beta.view(1, -1, 1, 1).to(x.dtype)


class ConvBlock(nn.Module):
    """pad -> conv (with bias) -> norm -> activation. `norm` is none | in | ln | adain;
    an `adain` block takes (x, mean, std)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, norm: str = "none",
                 activ: str = "relu", pad_type: str = "reflect"):
        super().__init__()
        pad_mode = {"reflect": "reflect", "replicate": "replicate", "zero": "zeros"}[pad_type]
        # (k - 1) // 2: 7->3, 5->2, 3->1, 1->0, and 4->1 so 4x4 stride-2 maps H to floor(H / 2)
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, bias=True, padding_mode=pad_mode)
        self.norm_type = norm
        if norm == "ln":
            self.norm = LayerNorm(cout)
        elif norm == "in":
            self.norm = nn.InstanceNorm2d(cout, affine=False, eps=EPS)
        elif norm in ("none", "adain"):
            self.norm = None
        else:
            raise ValueError(f"unknown norm {norm}")
        self.activ = make_activation(activ)

    def forward(self, x: Tensor, mean: Tensor | None = None, std: Tensor | None = None) -> Tensor:
        x = self.conv(x)
        if self.norm_type == "adain":
            x = adain(x, mean, std)
        elif self.norm is not None:
            x = self.norm(x)
        return self.activ(x)


class ResBlock(nn.Module):
    """conv3x3 -> norm -> activ -> conv3x3 -> norm, plus the input; no activation after the add."""

    def __init__(self, dim: int, norm: str, activ: str, pad_type: str):
        super().__init__()
        self.conv1 = ConvBlock(dim, dim, 3, 1, norm, activ, pad_type)
        self.conv2 = ConvBlock(dim, dim, 3, 1, norm, "none", pad_type)

    def forward(self, x: Tensor, adain_params: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        if adain_params is None:
            return x + self.conv2(self.conv1(x))
        (m1, s1), (m2, s2) = adain_params
        return x + self.conv2(self.conv1(x, m1, s1), m2, s2)


class MLP(nn.Module):
    """style (B, style_dim) -> AdaIN parameters (B, n_out): Linear-activ, Linear-activ, Linear."""

    def __init__(self, din: int, dout: int, dim: int, activ: str, n_blk: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(din, dim), make_activation(activ)]
        for _ in range(n_blk - 2):
            layers += [nn.Linear(dim, dim), make_activation(activ)]
        layers.append(nn.Linear(dim, dout))
        self.model = nn.Sequential(*layers)

    def forward(self, s: Tensor) -> Tensor:
        return self.model(s.flatten(1))
