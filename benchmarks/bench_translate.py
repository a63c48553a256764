"""Translate benchmark: one image, 8 styles, `munit` preset (random init), per precision.

Each precision runs in its own subprocess so its peak memory is its own (CPU: the peak RSS
of the translate phase, from /proc; CUDA: torch.cuda.max_memory_allocated). Prints JSON.

    python benchmarks/bench_translate.py --device cpu --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from munit_cli.checkpoint import GEN_PARTS, CheckpointInfo, GeneratorBundle
from munit_cli.config import model_preset
from munit_cli.inference import Translator
from munit_cli.models import build_generator, random_styles
from munit_cli.runtime import resolve_device


def _rss_peak_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _reset_rss_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak covers what follows only."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_one(device: torch.device, precision: str, size: int, styles: int, repeats: int, preset: str) -> dict:
    """Time Translator.translate (content once, all styles in one batch, uint8 on the host)."""
    torch.manual_seed(0)
    cfg = model_preset(preset)
    gens = {d: build_generator(cfg) for d in "ab"}
    for g in gens.values():
        g.parts = GEN_PARTS
    info = CheckpointInfo(Path("<random init>"), "generator", cfg, None, ("a", "b"), cfg.image_size, 0, "bench")
    tr = Translator(GeneratorBundle(info, gens, False, torch.float32), "a", "b", device, precision, batch_size=styles)
    x_a = torch.rand(3, size, size) * 2 - 1  # (3, H, W) in [-1, 1]
    s_b = random_styles(styles, cfg.gen.style_dim, seed=0)
    tr.translate(x_a, s_b)  # warm-up: allocator, oneDNN / cuDNN kernel choice
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _rss_peak_mb() if not _reset_rss_peak() else None
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        tr.translate(x_a, s_b)  # ends with the uint8 copy to the host: a full sync
        times.append(time.perf_counter() - t0)
    out = {
        "seconds": {"median": statistics.median(times), "min": min(times), "max": max(times),
                    "runs": [round(t, 4) for t in times]},
        "images_per_s": styles / statistics.median(times),
    }
    if device.type == "cuda":
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["memory"] = "torch.cuda.max_memory_allocated during the timed runs"
    else:
        out["peak_memory_mb"] = _rss_peak_mb()
        out["memory"] = ("process peak RSS during the timed runs (VmHWM reset after warm-up)" if rss_before is None
                         else "process peak RSS since start (VmHWM could not be reset)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per precision (after one warm-up)")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--styles", type=int, default=8, help="styles per image")
    ap.add_argument("--preset", default="munit", help="model preset (munit | small | tiny)")
    ap.add_argument("--precisions", default=None, help="comma list [default: fp32,bf16 on CPU; fp32,bf16,fp16 on CUDA]")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)  # one precision, in a subprocess
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args._worker:
        print(json.dumps(run_one(device, args._worker, args.size, args.styles, args.repeats, args.preset)))
        return
    precisions = args.precisions.split(",") if args.precisions else (
        ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"])
    results = {}
    for p in precisions:
        cmd = [sys.executable, __file__, "--_worker", p, "--device", str(device), "--repeats", str(args.repeats),
               "--size", str(args.size), "--styles", str(args.styles), "--preset", args.preset]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            results[p] = {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
        else:
            results[p] = json.loads(r.stdout.strip().splitlines()[-1])
    base = results.get("fp32", {}).get("seconds", {}).get("median")
    for p, r in results.items():
        if base and "seconds" in r:
            r["speedup_vs_fp32"] = base / r["seconds"]["median"]
    report = {
        "benchmark": "translate", "preset": args.preset, "size": args.size, "styles": args.styles,
        "repeats": args.repeats, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "load_avg": os.getloadavg()[0],
        "results": results,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
