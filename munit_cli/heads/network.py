"""The head detector's CNN: five stride-2 conv stages, a top-down merge back to stride 8, and
per cell of that grid a head-centre logit, the centre's offset in the cell and the log side.

One head per photo: the most prominent is the cell with the highest logit (CenterNet-style,
Zhou et al. 2019, reduced to one object), which keeps the box where the head is instead of
regressing every photo toward the average box.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

STRIDE = 8  # input pixels per cell of the output grid
PRIOR = 0.01  # initial head probability per cell (focal-loss init, Lin et al. 2017)


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class HeadNet(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> (B, 4, S/8, S/8): logit, dx, dy, log(side / S) per cell."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128, 192), neck: int = 64):
        super().__init__()
        if len(widths) != 5:
            raise ValueError("HeadNet needs five stage widths (strides 2, 4, 8, 16, 32)")
        stages, c_in = [], 3
        for k, w in enumerate(widths):
            layers = [conv_bn(c_in, w, stride=2)] + ([conv_bn(w, w)] if k > 0 else [])
            stages.append(nn.Sequential(*layers))
            c_in = w
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(w, neck, 1) for w in widths[2:])  # strides 8, 16, 32
        self.head = nn.Sequential(conv_bn(neck, neck), nn.Conv2d(neck, 4, 1))
        with torch.no_grad():
            self.head[-1].bias.zero_()
            self.head[-1].bias[0] = -math.log((1 - PRIOR) / PRIOR)
            self.head[-1].bias[3] = math.log(0.5)  # a head half the canvas wide

    def forward(self, x: Tensor) -> Tensor:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        c3, c4, c5 = feats[2:]  # (B, w, S/8, S/8), (B, w, S/16, ...), (B, w, S/32, ...)
        p = self.lateral[2](c5)
        p = self.lateral[1](c4) + F.interpolate(p, scale_factor=2, mode="nearest")
        p = self.lateral[0](c3) + F.interpolate(p, scale_factor=2, mode="nearest")
        return self.head(p)  # (B, 4, S/8, S/8)


def predict(net: HeadNet, x: Tensor) -> Tensor:
    """The network on x and on its mirror image, averaged (the mirror's output flipped back,
    its x offsets negated): steadier boxes for twice the compute, still milliseconds."""
    out = net(x)
    mirror = net(x.flip(-1)).flip(-1)
    mirror = torch.cat([mirror[:, :1], -mirror[:, 1:2], mirror[:, 2:]], 1)
    return (out + mirror) / 2


def decode(out: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Network output (B, 4, G, G) -> (boxes (B, 4) in canvas pixels, confidence (B,)): the
    box of the cell with the highest logit, confidence its sigmoid."""
    b, _, g, _ = out.shape
    out = out.float()
    logit, cell = out[:, 0].flatten(1).max(1)  # (B,), (B,)
    pick = out.flatten(2)[torch.arange(b), :, cell]  # (B, 4)
    row, col = (cell // g).float(), (cell % g).float()
    cx = (col + 0.5 + pick[:, 1]) * STRIDE
    cy = (row + 0.5 + pick[:, 2]) * STRIDE
    side = pick[:, 3].clamp(-6, 3).exp() * size
    boxes = torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)
    return boxes, torch.sigmoid(logit)
