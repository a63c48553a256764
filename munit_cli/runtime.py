"""Device, precision and speed settings shared by every command that computes."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

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


PRECISION_HELP = "auto | fp32 | bf16 | fp16 (auto: bf16 where this device runs it natively, else fp32; fp16: GPUs)"
PRECISION_CHOICES = ("auto", *PRECISION_DTYPES)
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) at or above which it has bf16 dot-product instructions
_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "AMX", "DEFAULT", "ALL")


@dataclass(frozen=True)
class CpuBf16:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), and why we think so."""

    native: bool
    reason: str


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


@functools.lru_cache(maxsize=None)
def cpu_bf16() -> CpuBf16:
    """The one place that decides whether bf16 is native on this CPU (cached per process).

    Native means torch's CPU kernels run at AVX-512 level and the CPU has AVX512-BF16 or AMX
    tiles, so oneDNN convolutions use bf16 dot products (about 2x fp32 measured on Zen 4 and
    Sapphire Rapids). Elsewhere (AVX2-only x86, most laptops; ARM, Apple silicon) bf16 is
    converted in software: 100-200x slower than fp32 (benchmarks/README.md). ONEDNN_MAX_CPU_ISA /
    ATEN_CPU_CAPABILITY below those levels count as not native, since they switch the kernels off.
    """
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return CpuBf16(False, f"{machine} CPU: bf16 is not known to be native here")
    cap = torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", "DEFAULT", ...
    if not cap.upper().startswith("AVX512"):
        return CpuBf16(False, f"torch's CPU kernels run at {cap} level (no AVX-512)")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if isa and not any(k in isa.upper() for k in _BF16_ISAS):
        return CpuBf16(False, f"ONEDNN_MAX_CPU_ISA={isa} switches oneDNN's bf16 instructions off")
    flags = _cpu_flags()
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    has_bf16 = probe() if probe else "avx512_bf16" in flags
    has_amx = amx() if amx else "amx_bf16" in flags
    if has_amx:
        return CpuBf16(True, "the CPU has AMX (bf16 tile instructions)")
    if has_bf16:
        return CpuBf16(True, "the CPU has AVX512-BF16")
    return CpuBf16(False, "the CPU has AVX-512 but neither AVX512-BF16 nor AMX")


@dataclass(frozen=True)
class PrecisionChoice:
    """What `--precision auto` resolves to on a device, and why."""

    precision: str
    reason: str


def auto_precision(device: torch.device) -> PrecisionChoice:
    """CPU: bf16 only where native, else fp32. CUDA: bf16 where the GPU has it (Ampere and
    newer), else fp16 on tensor-core GPUs (Volta, Turing), fp32 before that (no fp16 gain);
    training keeps fp32 master weights either way (autocast, plus a GradScaler for fp16).
    MPS: fp32 (autocast there is not measured by this project)."""
    if device.type == "cpu":
        bf = cpu_bf16()
        return PrecisionChoice("bf16" if bf.native else "fp32", f"CPU: {bf.reason}")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return PrecisionChoice("bf16", f"{name} supports bf16")
        major, _ = torch.cuda.get_device_capability(device)
        if major >= 7:
            return PrecisionChoice("fp16", f"{name} has fp16 tensor cores but no bf16")
        return PrecisionChoice("fp32", f"{name} has no tensor cores (fp16 would not be faster)")
    return PrecisionChoice("fp32", f"{device.type}: fp32 (mixed precision is not measured there)")


def native_precisions(device: torch.device) -> tuple[str, ...]:
    """The precisions `device` computes natively: fp32, plus bf16 on CPUs with AVX512-BF16 / AMX
    (emulated bf16 is 100-200x slower); on CUDA fp16, and bf16 where the GPU has it."""
    if device.type == "cuda":
        return ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported(including_emulation=False) else ("fp32", "fp16")
    if device.type == "cpu":
        return ("fp32", "bf16") if cpu_bf16().native else ("fp32",)
    return ("fp32",)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device_entry(device: torch.device, name: str) -> dict:
    choice = auto_precision(device)
    return {"device": str(device), "name": name, "auto_precision": choice.precision, "reason": choice.reason,
            "native_precisions": list(native_precisions(device))}


def system_report() -> dict:
    """What this machine offers munit: CPU and its bf16 support, GPUs, and what
    `--precision auto` resolves to on each device, with the reason (`munit info --system`)."""
    devices = [_device_entry(torch.device("cpu"), cpu_model())]
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        devices.append(_device_entry(torch.device("cuda", i), torch.cuda.get_device_name(i)))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices.append(_device_entry(torch.device("mps"), "Apple GPU"))
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16_native": cpu_bf16().native,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "default_device": str(resolve_device("auto")), "devices": devices}


def check_precision(precision: str, device: torch.device) -> str:
    """Validate a --precision value for `device` and resolve "auto"; returns fp32 | bf16 | fp16."""
    precision = (precision or "auto").strip().lower()
    if precision == "auto":
        return auto_precision(device).precision
    if precision not in PRECISION_DTYPES:
        raise MunitError(f"unknown precision {precision!r}: use auto, fp32, bf16 or fp16", exit_code=2)
    if precision == "fp16" and device.type == "cpu":
        raise MunitError("precision 'fp16' is for GPUs: on CPU use --precision auto (or fp32)", exit_code=2)
    return precision


def bf16_emulated(precision: str, device: torch.device) -> bool:
    """True when `precision` is bf16 on a CPU that only emulates it."""
    return precision == "bf16" and device.type == "cpu" and not cpu_bf16().native


def emulation_warning(precision: str, device: torch.device) -> str | None:
    """The one line to show when `precision` is bf16 on a CPU that emulates it, else None."""
    if not bf16_emulated(precision, device):
        return None
    return (f"--precision bf16 is emulated on this CPU (no AVX512-BF16 or AMX): measured "
            f"{measured_bf16_slowdown():.0f}x slower than fp32 here; use --precision fp32 (or auto)")


@functools.lru_cache(maxsize=None)
def measured_bf16_slowdown() -> float:
    """How many times slower a small bf16 convolution is than fp32 here (best of 3, ~0.1 s
    where bf16 is emulated)."""
    x, w = torch.randn(1, 32, 32, 32), torch.randn(32, 32, 3, 3)

    def best(dtype: torch.dtype) -> float:
        xx, ww = x.to(dtype), w.to(dtype)
        F.conv2d(xx, ww, padding=1)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            F.conv2d(xx, ww, padding=1)
            times.append(time.perf_counter() - t0)
        return min(times)

    return best(torch.bfloat16) / max(best(torch.float32), 1e-9)


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
