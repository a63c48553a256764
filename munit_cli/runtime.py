"""Device, precision and speed settings shared by every command that computes."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import sys

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
    """channels_last pays on CUDA (cuDNN tensor cores). On CPU oneDNN is as fast on NCHW, and
    channels_last costs copies around the norms: 2-12% slower (benchmarks/README.md)."""
    return device.type == "cuda"


def speed_settings(device: torch.device) -> None:
    """Process-wide settings that make the compute faster; idempotent.

    CUDA: cudnn.benchmark (shapes repeat every step, so autotuned convolutions pay at once).
    Host memory (Linux, glibc): keep freed blocks up to 1 GiB in the process. By default glibc
    returns every block over 32 MiB to the OS on free, so each large activation is page-faulted
    in again on every use: 1.5x on CPU translation (benchmarks/README.md). Left alone when the
    user sets MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ or preloads another allocator.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    keep_host_memory()


@functools.lru_cache(maxsize=None)
def keep_host_memory() -> bool:
    """Tune glibc malloc as `speed_settings` says (once per process); whether it applies."""
    if sys.platform != "linux" or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                                 "LD_PRELOAD")):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc only (musl has no mallopt)
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30) and mallopt(m_trim_threshold, 1 << 30))
