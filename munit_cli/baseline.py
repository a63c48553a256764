"""The benchmark's naive baseline: plain layers, fp32, contiguous memory, one decode per style,
and the reference training step (fakes generated twice, D weight gradients in the G step).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import replace
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from munit_cli import layers
from munit_cli.config import ModelConfig, TrainConfig
from munit_cli.models import Generator
from munit_cli.trainer import Trainer


def _upsample_conv(x: Tensor, conv: torch.nn.Conv2d) -> Tensor:
    return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W) copy, then k x k


def _conv2d(conv: torch.nn.Conv2d, x: Tensor) -> Tensor:
    return conv(x)


def _instance_norm(x: Tensor) -> Tensor:
    return F.instance_norm(x, eps=layers.EPS)


def _layer_norm(self: layers.LayerNorm, x: Tensor) -> Tensor:
    flat = x.flatten(1)  # (B, C*H*W)
    mean, std = flat.mean(1).view(-1, 1, 1, 1), flat.std(1).view(-1, 1, 1, 1)
    return (x - mean) / (std + self.eps) * self.gamma.view(1, -1, 1, 1) + self.beta.view(1, -1, 1, 1)


@contextlib.contextmanager
def plain_layers() -> Iterator[None]:
    """Run munit_cli.layers in their plain forms until exit: an upsampled copy before each
    decoder conv, the conv's own padding, torch's instance norm, LayerNorm in textbook steps.
    Process-wide while active (not thread-safe)."""
    saved = layers.upsample_conv, layers.conv2d, layers.instance_norm, layers.LayerNorm.forward
    layers.upsample_conv, layers.conv2d, layers.instance_norm = _upsample_conv, _conv2d, _instance_norm
    layers.LayerNorm.forward = _layer_norm
    try:
        yield
    finally:
        layers.upsample_conv, layers.conv2d, layers.instance_norm, layers.LayerNorm.forward = saved


def naive_generators(gen_src: Generator, gen_tgt: Generator, device: torch.device) -> tuple[Generator, Generator]:
    """fp32, contiguous copies on `device`, in eval mode."""
    return tuple(copy.deepcopy(g).float().to(device).eval() for g in (gen_src, gen_tgt))


@torch.no_grad()
def naive_translate(gen_src: Generator, gen_tgt: Generator, x_a: Tensor, s_b: Tensor) -> Tensor:
    """x_a (3, H, W), s_b (N, style_dim, 1, 1) -> x_ab (N, 3, H, W): content once, then one
    decode per style in a Python loop, plain layers."""
    with plain_layers():
        c_a = gen_src.enc_content(x_a[None])
        return torch.cat([gen_tgt.decode(c_a, s) for s in s_b.split(1)])


class NaiveTrainer(Trainer):
    """The reference training step in fp32 on contiguous tensors, with plain layers."""

    def __init__(self, model: ModelConfig, train: TrainConfig, device: torch.device):
        super().__init__(model, replace(train, shared_fakes=False, precision="fp32"), device, channels_last=False)

    def train_step(self, x_a: Tensor, x_b: Tensor) -> dict[str, Tensor]:
        with plain_layers():
            return super().train_step(x_a, x_b)
