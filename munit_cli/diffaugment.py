"""DiffAugment (Zhao et al., NeurIPS 2020): random colour, translation and cutout applied
differentiably to every image the discriminator sees, real and fake alike.

Each image of a batch gets its own random draw, taken on the CPU from a caller-owned
torch.Generator (so runs on any device draw the same, and a checkpoint can store the state).
Transforms (images in [-1, 1]): colour = brightness + U(-0.5, 0.5), saturation x U(0, 2)
about the pixel's channel mean, contrast x U(0.5, 1.5) about the image mean; translation by
up to 1/8 of each side, zero-filled; cutout of a zero square of half each side, centred anywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from munit_cli.config import DIFFAUG_OPS
from munit_cli.errors import MunitError

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str) -> tuple[str, ...]:
    """"color,translation,cutout" -> ('color', 'translation', 'cutout'); "" -> () (off)."""
    ops = tuple(op.strip() for op in policy.split(",")) if policy.strip() else ()
    for op in ops:
        if op not in DIFFAUG_OPS:
            raise MunitError(f"unknown DiffAugment op {op!r} in {policy!r}: use a comma-separated list of "
                             f"{', '.join(DIFFAUG_OPS)}", exit_code=2)
    if len(set(ops)) != len(ops):
        raise MunitError(f"DiffAugment policy {policy!r} repeats an op: name each at most once", exit_code=2)
    return ops


def _uniform(n: int, low: float, high: float, gen: torch.Generator, like: Tensor) -> Tensor:
    u = torch.rand(n, 1, 1, 1, generator=gen) * (high - low) + low  # (B, 1, 1, 1), drawn on the CPU
    return u.to(like.device, like.dtype)


def color(x: Tensor, gen: torch.Generator) -> Tensor:
    n = x.shape[0]
    x = x + _uniform(n, -0.5, 0.5, gen, x)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(n, 0.0, 2.0, gen, x) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(n, 0.5, 1.5, gen, x) + mean  # contrast


def translation(x: Tensor, gen: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1), generator=gen)
    dx = torch.randint(-sw, sw + 1, (n, 1), generator=gen)
    # output pixel (i, j) reads input (i + dy, j + dx); indices off the image land on the zero border
    rows = ((torch.arange(h) + dy).clamp(-1, h) + 1).to(x.device)  # (B, H) into the padded image
    cols = ((torch.arange(w) + dx).clamp(-1, w) + 1).to(x.device)  # (B, W)
    xp = F.pad(x, (1, 1, 1, 1))  # (B, C, H + 2, W + 2)
    b = torch.arange(n, device=x.device)[:, None, None]
    y = xp[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return y.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def cutout(x: Tensor, gen: torch.Generator) -> Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (n, 1), generator=gen) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (n, 1), generator=gen) - cw // 2
    r, c = torch.arange(h), torch.arange(w)
    in_rows = (r >= top) & (r < top + ch)  # (B, H)
    in_cols = (c >= left) & (c < left + cw)  # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.device, x.dtype)


OPS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: Tensor, policy: tuple[str, ...] | str, gen: torch.Generator) -> Tensor:
    """Apply the policy's ops in order to a batch (B, C, H, W); differentiable in x."""
    ops = parse_policy(policy) if isinstance(policy, str) else policy
    for op in ops:
        x = OPS[op](x, gen)
    return x


class DiffAugment:
    """`augment(x)`: the policy with draws from this object's generator (`.gen`, seeded by the caller)."""

    def __init__(self, policy: str, gen: torch.Generator):
        self.ops, self.gen = parse_policy(policy), gen

    def __call__(self, x: Tensor) -> Tensor:
        return diff_augment(x, self.ops, self.gen)
