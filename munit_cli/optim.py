"""The optimiser of the small helper networks (the domain classifier, the head detector):
AdamW with a linear warm-up, then a cosine decay to 0, stepped once per batch."""

from __future__ import annotations

import math
from typing import Iterable

import torch


def adamw_warmup_cosine(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float, steps_per_epoch: int,
                        epochs: int, warmup_epochs: float) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """(optimiser, scheduler): the rate rises linearly to `lr` over `warmup_epochs` (at least one
    step), then follows half a cosine to 0 at the end of `epochs`."""
    total = steps_per_epoch * epochs
    warm = max(1, round(warmup_epochs * steps_per_epoch))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: (i + 1) / warm if i < warm else 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, total - warm))))
    return opt, sched
