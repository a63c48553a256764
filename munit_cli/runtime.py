"""Device and precision selection shared by every command that computes."""

from __future__ import annotations

import contextlib

import torch

from munit_cli.errors import MunitError

DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps"
PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """Turn a --device value into a torch.device, checking it exists."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MunitError(f"unknown device {name!r}: use {DEVICE_HELP}", exit_code=2)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MunitError(f"device {name!r} requested but CUDA is not available here: use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MunitError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise MunitError(f"device {name!r} requested but MPS is not available here: use --device cpu")
    elif dev.type != "cpu":
        raise MunitError(f"unsupported device {name!r}: use {DEVICE_HELP}", exit_code=2)
    return dev


def check_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISION_DTYPES:
        raise MunitError(f"unknown precision {precision!r}: use fp32, bf16 or fp16", exit_code=2)
    if precision == "fp16" and device.type == "cpu":
        raise MunitError("precision 'fp16' is for GPUs: on CPU use --precision bf16 (or fp32)", exit_code=2)
    return precision


def autocast(device: torch.device, precision: str):
    """Mixed-precision context: weights stay fp32, convolutions run in bf16/fp16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISION_DTYPES[precision])


def channels_last_ok(device: torch.device) -> bool:
    """channels_last pays on CPU (oneDNN) and CUDA (cuDNN tensor cores)."""
    return device.type in ("cpu", "cuda")
