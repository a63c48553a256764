"""Speed of translation and training on one device, side by side with the naive baseline:
the core of `munit bench`. Returns JSON-ready dicts; nothing here prints.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from munit_cli.baseline import NaiveTrainer, naive_generators, naive_translate
from munit_cli.checkpoint import CheckpointInfo, GeneratorBundle
from munit_cli.config import TrainConfig, model_preset
from munit_cli.inference import Translator
from munit_cli.models import build_generator, random_styles
from munit_cli.runtime import (PRECISION_DTYPES, auto_precision, bf16_emulated, channels_last_ok, keep_host_memory,
                               native_precisions, speed_settings)
from munit_cli.trainer import Trainer

Progress = Callable[[str, int, int], None]  # (what, done, total)


def default_precisions(device: torch.device) -> tuple[str, ...]:
    """What `munit bench` measures unless told: the precisions native here (runtime)."""
    return native_precisions(device)


@dataclass
class BenchConfig:
    """What to measure. The defaults are the full benchmark of issue 6."""

    device: torch.device
    preset: str = "munit"
    repeats: int = 5  # timed rounds per workload (after one warm-up)
    precisions: tuple[str, ...] = ()  # () = default_precisions(device)
    translate_size: int = 256  # 0 = skip translation
    styles: int = 8
    train_sizes: tuple[int, ...] = (128, 256)
    batch_sizes: tuple[int, ...] = (1, 4)
    memory_size: int = 1024  # translate peak-memory check (0 = skip)
    naive: bool = True  # run the naive baseline next to ours
    threads: int = 0  # torch intra-op threads while measuring (0 = leave as is)
    compile: bool = False  # torch.compile the training generators (ours)
    peak_repeats: int = 5

    def resolved_precisions(self) -> tuple[str, ...]:
        return self.precisions or default_precisions(self.device)


def quick_config(device: torch.device, preset: str = "munit") -> BenchConfig:
    """--quick: a small subset (small images, 2 styles, batch 1, two rounds), seconds not minutes."""
    return BenchConfig(device, preset=preset, repeats=2, translate_size=64, styles=2, train_sizes=(64,),
                       batch_sizes=(1,), memory_size=0, peak_repeats=2)


# --- measuring ----------------------------------------------------------------------------

def summarise(xs: list[float]) -> dict:
    med = statistics.median(xs)
    return {"median": med, "min": min(xs), "max": max(xs),
            "spread_pct": 100 * (max(xs) - min(xs)) / med if med else 0.0, "runs": [round(x, 5) for x in xs]}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def count_gflop(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


@contextlib.contextmanager
def _fd2_silenced() -> Iterator[None]:
    """The profiler's C++ side logs start / stop lines straight to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak tensor memory allocated by `fn` above what was allocated before it, in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    if device.type != "cpu":
        return None
    from torch.profiler import ProfilerActivity, profile

    with _fd2_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:  # allocation (+bytes) and free (-bytes) records in time order
        events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                        key=lambda e: e.start_ns())
    except AttributeError:  # a torch without these records
        return None
    live = peak = 0
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak / 2**20


def machine_peak(device: torch.device, precision: str, repeats: int) -> dict:
    """GFLOP/s of a large matmul and of a large 3x3 convolution in `precision` (best runs).
    Emulated bf16 gets workloads 500x smaller, so it takes seconds, not minutes."""
    dtype = PRECISION_DTYPES[precision]
    small = bf16_emulated(precision, device)
    n = 8192 if device.type == "cuda" else 256 if small else 2048
    batch, ch, hw = (1, 64, 32) if small else (8, 256, 64)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    x = torch.randn(batch, ch, hw, hw, device=device, dtype=dtype)
    w = torch.randn(ch, ch, 3, 3, device=device, dtype=dtype)
    out = {}
    for name, fn, flop in (("matmul_gflops", partial(torch.matmul, a, b), 2 * n**3),
                           ("conv_gflops", partial(F.conv2d, x, w, padding=1), 2 * 9 * ch * ch * batch * hw * hw)):
        fn()
        out[name] = flop / 1e9 / min(_timed(fn, device) for _ in range(max(1, repeats)))
    return out


@dataclass
class _Variant:
    variant: str  # "naive" | "ours"
    precision: str
    fn: Callable[[], object]
    times: list[float] = field(default_factory=list)


def _interleaved(variants: list[_Variant], device: torch.device, repeats: int, tick: Callable[[], None]) -> None:
    for v in variants:  # warm-up: allocator, oneDNN / cuDNN kernel choice
        v.fn()
        tick()
    for _ in range(repeats):
        for v in variants:
            v.times.append(_timed(v.fn, device))
            tick()


def _rows(variants: list[_Variant], device: torch.device, per: dict) -> list[dict]:
    """One result row per variant: times, FLOPs, memory, ratio to the naive one."""
    naive = next((v for v in variants if v.variant == "naive"), None)
    rows = []
    for v in variants:
        sec = statistics.median(v.times)
        gflop = count_gflop(v.fn)
        row = {**per, "variant": v.variant, "precision": v.precision, "seconds": summarise(v.times),
               "gflop": gflop, "gflops": gflop / sec, "peak_memory_mb": peak_memory_mb(v.fn, device)}
        if naive is not None:
            row["speedup_vs_naive"] = summarise([a / b for a, b in zip(naive.times, v.times)])
        rows.append(row)
    return rows


# --- workloads ----------------------------------------------------------------------------

def random_bundle(preset: str) -> GeneratorBundle:
    """Two randomly initialised generators (seed 0) as if loaded from a checkpoint."""
    torch.manual_seed(0)
    cfg = model_preset(preset)
    gens = {d: build_generator(cfg) for d in "ab"}
    info = CheckpointInfo(Path("<random init>"), "generator", cfg, None, ("a", "b"), cfg.image_size, 0, "bench")
    return GeneratorBundle(info, gens, False, torch.float32)


def _translate_variants(cfg: BenchConfig, size: int, styles: int, precisions: tuple[str, ...]) -> list[_Variant]:
    bundle = random_bundle(cfg.preset)
    x_a = torch.rand(3, size, size) * 2 - 1  # (3, H, W) in [-1, 1]
    s_b = random_styles(styles, bundle.info.model.gen.style_dim, seed=0)
    out = []
    if cfg.naive:
        g_src, g_tgt = naive_generators(bundle.gens["a"], bundle.gens["b"], cfg.device)
        x_dev, s_dev = x_a.to(cfg.device), s_b.to(cfg.device)
        out.append(_Variant("naive", "fp32", lambda: naive_translate(g_src, g_tgt, x_dev, s_dev)))
    for p in precisions:  # Translator's defaults: content once, auto batch of styles, uint8 on the host
        tr = Translator(bundle, "a", "b", cfg.device, p)
        out.append(_Variant("ours", p, partial(tr.translate, x_a, s_b)))
    return out


def bench_translate(cfg: BenchConfig, tick: Callable[[], None]) -> list[dict]:
    variants = _translate_variants(cfg, cfg.translate_size, cfg.styles, cfg.resolved_precisions())
    _interleaved(variants, cfg.device, cfg.repeats, tick)
    rows = _rows(variants, cfg.device, {"size": cfg.translate_size, "styles": cfg.styles})
    for r in rows:
        r["seconds_per_image"] = r["seconds"]["median"] / cfg.styles
    return rows


def bench_memory(cfg: BenchConfig, tick: Callable[[], None]) -> dict:
    """Translate peak memory at a large size: naive versus ours (auto style batch) per precision."""
    variants = _translate_variants(cfg, cfg.memory_size, cfg.styles, cfg.resolved_precisions())
    out: dict = {"size": cfg.memory_size, "styles": cfg.styles, "ours_mb": {}}
    for v in variants:
        mb = peak_memory_mb(v.fn, cfg.device)
        if v.variant == "naive":
            out["naive_mb"] = mb
        else:
            out["ours_mb"][v.precision] = mb
        tick()
    return out


def _trainers(cfg: BenchConfig) -> list[tuple[str, str, Trainer]]:
    """(variant, precision, trainer): the naive one, then ours per precision."""
    model, train = model_preset(cfg.preset), TrainConfig()
    trainers: list[tuple[str, str, Trainer]] = [("naive", "fp32", NaiveTrainer(model, train, cfg.device))] if cfg.naive else []
    trainers += [("ours", p, Trainer(model, replace(train, precision=p), cfg.device, compile=cfg.compile))
                 for p in cfg.resolved_precisions()]
    return trainers


def bench_train(cfg: BenchConfig, trainers: Callable[[], list], size: int, batch: int,
                tick: Callable[[], None]) -> list[dict]:
    """Seconds per training iteration (one D and one G update, EMA) on host batches like a
    DataLoader's; `trainers()` returns the same trainers for every size and batch."""
    torch.manual_seed(size * 100 + batch)
    x_a = torch.rand(batch, 3, size, size) * 2 - 1  # (B, 3, H, W) in [-1, 1]
    x_b = torch.rand(batch, 3, size, size) * 2 - 1
    variants = [_Variant(name, p, partial(t.train_step, x_a, x_b)) for name, p, t in trainers()]
    _interleaved(variants, cfg.device, cfg.repeats, tick)
    rows = _rows(variants, cfg.device, {"size": size, "batch": batch})
    for r in rows:
        r["iters_per_s"] = 1.0 / r["seconds"]["median"]
    return rows


def bench_peaks(cfg: BenchConfig, tick: Callable[[], None]) -> dict:
    out = {}
    for p in cfg.resolved_precisions():
        out[p] = machine_peak(cfg.device, p, cfg.peak_repeats)
        tick()
    return out


@dataclass
class Workload:
    """One measured stage of a run: its progress label, how many times it ticks, what it runs
    (given the tick function) and the result key it fills."""

    label: str
    ticks: int
    run: Callable[[Callable[[], None]], object]
    key: str  # peak_start | translate | train | memory | peak_end


def plan(cfg: BenchConfig) -> list[Workload]:
    """Everything `run_bench` will measure, in order; the progress total is derived from it."""
    n_prec = len(cfg.resolved_precisions())
    n_var, rounds = n_prec + cfg.naive, cfg.repeats + 1  # every variant: a warm-up, then the rounds
    cache: list = []

    def trainers() -> list:  # built on first use, shared by every training size and batch
        if not cache:
            cache.extend(_trainers(cfg))
        return cache

    work = [Workload("machine peak", n_prec, partial(bench_peaks, cfg), "peak_start")]
    if cfg.translate_size:
        work.append(Workload(f"translate {cfg.translate_size} px", n_var * rounds, partial(bench_translate, cfg), "translate"))
    for size in cfg.train_sizes:
        for batch in cfg.batch_sizes:
            work.append(Workload(f"train {size} px, batch {batch}", n_var * rounds,
                                 partial(bench_train, cfg, trainers, size, batch), "train"))
    if cfg.memory_size:
        work.append(Workload(f"memory at {cfg.memory_size} px", n_var, partial(bench_memory, cfg), "memory"))
    work.append(Workload("machine peak", n_prec, partial(bench_peaks, cfg), "peak_end"))  # the load may change
    return work


def total_ticks(cfg: BenchConfig) -> int:
    """How many times `run_bench` calls `progress` (for a progress bar)."""
    return sum(w.ticks for w in plan(cfg))


def run_bench(cfg: BenchConfig, progress: Progress | None = None) -> dict:
    """Measure everything `cfg` asks for. Each workload runs its variants interleaved (naive,
    ours fp32, ours bf16, ..., then again) so a changing machine load hits all alike; ratios
    are taken per round, then summarised. The result:

    device, device_name, torch, threads, preset, repeats, load_avg_start, load_avg_end,
    auto_precision {precision, reason}   what --precision auto picks on this device, and why
    emulated [PRECISION]                 measured precisions this device only emulates (bf16 on
                                         CPUs without AVX512-BF16 / AMX)
    settings {channels_last, cudnn_benchmark, host_allocator_tuned, compile}
    peak {PRECISION: {matmul_gflops, conv_gflops}}   best GFLOP/s of a large matmul and a large
                                                      3x3 conv, measured at the start and at the end
    translate [{size, styles, variant, precision, seconds, seconds_per_image, gflop, gflops,
                peak_fraction, peak_memory_mb, speedup_vs_naive}]
    train [{size, batch, variant, precision, seconds, iters_per_s, gflop, gflops, peak_fraction,
            peak_memory_mb, speedup_vs_naive}]
    memory {size, styles, naive_mb, ours_mb {PRECISION: mb}}  (translate at a large size)

    `seconds` and `speedup_vs_naive` are {median, min, max, spread_pct, runs}; `variant` is
    "naive" (baseline.py) or "ours". FLOPs are counted by torch.utils.flop_counter (conv and
    matmul, forward and backward) for each variant's own work; peak_fraction is gflops over
    the better of the two machine peaks in that precision. Peak memory: CUDA
    max_memory_allocated, CPU the peak of tensor bytes the profiler saw allocated, both
    above what was allocated before the call.
    """
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: BenchConfig, progress: Progress | None) -> dict:
    dev = cfg.device
    speed_settings(dev)
    work = plan(cfg)
    total, done = sum(w.ticks for w in work), 0

    def stage(what: str) -> Callable[[], None]:
        def tick() -> None:
            nonlocal done
            done += 1
            if progress:
                progress(what, done, total)
        return tick

    auto = auto_precision(dev)
    result = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "preset": cfg.preset, "repeats": cfg.repeats,
        "load_avg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "auto_precision": {"precision": auto.precision, "reason": auto.reason},
        "emulated": [p for p in cfg.resolved_precisions() if bf16_emulated(p, dev)],
        "settings": {"channels_last": channels_last_ok(dev), "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                     "host_allocator_tuned": keep_host_memory(), "compile": cfg.compile},
        "peak": {}, "translate": [], "train": [], "memory": None,
    }
    peaks = {}
    for w in work:
        out = w.run(stage(w.label))
        if w.key.startswith("peak"):
            peaks[w.key] = out
        elif w.key == "train":
            result["train"].extend(out)
        else:
            result[w.key] = out
    start, end = peaks["peak_start"], peaks["peak_end"]  # the best of both: the load may have changed
    result["peak"] = {p: {k: max(v, end[p][k]) for k, v in start[p].items()} for p in start}
    for row in result["translate"] + result["train"]:
        row["peak_fraction"] = row["gflops"] / max(result["peak"][row["precision"]].values())
    result["load_avg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return result
