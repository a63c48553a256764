"""`munit bench`: translation and training speed on this device, next to the naive baseline."""

from __future__ import annotations

import dataclasses
from typing import Optional

import typer

from munit_cli.benchmark import BenchConfig, quick_config, run_bench, total_ticks
from munit_cli.config import PRESETS, model_preset
from munit_cli.errors import MunitError
from munit_cli.runtime import DEVICE_HELP, resolve_device
from munit_cli.ui import friendly, pick_precision, print_json, progress


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise MunitError(f"{option} takes comma-separated integers, got {text!r}", exit_code=2)
    if any(v < 0 for v in values):
        raise MunitError(f"{option} values must be >= 0, got {text!r}", exit_code=2)
    return values


def _check_sizes(cfg: BenchConfig) -> None:
    model = model_preset(cfg.preset)
    least = 2 ** (model.dis.n_layer + model.dis.num_scales - 1)  # the smallest D scale must reach 2 px
    for s in cfg.train_sizes:
        if s < least or s % 4:
            raise MunitError(f"--sizes {s}: training the {cfg.preset} preset needs multiples of 4 of at least {least} px",
                             exit_code=2)
    for opt, s in (("--translate-size", cfg.translate_size), ("--memory-size", cfg.memory_size)):
        if s and (s < 16 or s % 4):
            raise MunitError(f"{opt} {s}: use a multiple of 4 of at least 16 px (0 skips it)", exit_code=2)


def _fmt_row(label: str, row: dict, per: float) -> str:
    mem = "-" if row["peak_memory_mb"] is None else f"{row['peak_memory_mb']:.0f}"
    r = row.get("speedup_vs_naive")
    ratio = "" if r is None else f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"
    return (f"  {label:<12} {per:>9.3f} {row['seconds']['spread_pct']:>7.0f}% {row['gflops']:>8.1f} "
            f"{100 * (row['peak_fraction'] or 0):>5.0f}% {mem:>8} {ratio}")


def _print_report(r: dict) -> None:
    load = lambda v: "?" if v is None else f"{v[0]:.2f}"  # noqa: E731
    print(f"{r['device']} ({r['device_name']}), torch {r['torch']}, {r['threads']} thread(s), preset {r['preset']}, "
          f"{r['repeats']} rounds, load {load(r['load_avg_start'])} -> {load(r['load_avg_end'])}")
    print(f"--precision auto here: {r['auto_precision']['precision']} ({r['auto_precision']['reason']})")
    print("machine peak GFLOP/s: " + ", ".join(f"{p} matmul {v['matmul_gflops']:.0f} conv {v['conv_gflops']:.0f}"
                                              for p, v in r["peak"].items()))
    for p in r["emulated"]:
        if "fp32" in r["peak"]:
            slow = r["peak"]["fp32"]["conv_gflops"] / max(r["peak"][p]["conv_gflops"], 1e-9)
            print(f"{p} is emulated on this device: its convolutions run {slow:.0f}x slower than fp32; "
                  "use fp32 (or --precision auto) here")
    head = f"  {'':<12} {'seconds':>9} {'spread':>8} {'GFLOP/s':>8} {'peak':>6} {'mem MB':>8} vs naive (min-max)"
    if r["translate"]:
        t = r["translate"][0]
        print(f"translate {t['size']} px, {t['styles']} styles (seconds per image)")
        print(head)
        for row in r["translate"]:
            print(_fmt_row(f"{row['variant']} {row['precision']}", row, row["seconds_per_image"]))
    keys = sorted({(row["size"], row["batch"]) for row in r["train"]})
    for size, batch in keys:
        print(f"train {size} px, batch {batch} (seconds per iteration)")
        print(head)
        for row in r["train"]:
            if (row["size"], row["batch"]) == (size, batch):
                print(_fmt_row(f"{row['variant']} {row['precision']}", row, row["seconds"]["median"]))
    if r["memory"]:
        m = r["memory"]
        ours = ", ".join(f"ours {p} {mb:.0f} MB" for p, mb in m["ours_mb"].items() if mb is not None)
        naive = f"naive {m['naive_mb']:.0f} MB, " if m.get("naive_mb") is not None else ""
        print(f"translate peak memory at {m['size']} px, {m['styles']} styles: {naive}{ours}")


@friendly
def bench(
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    repeats: Optional[int] = typer.Option(None, "--repeats", metavar="N", min=1, help="Timed rounds per workload, after one warm-up (default: 5; --quick: 2)."),
    sizes: Optional[str] = typer.Option(None, "--sizes", metavar="LIST", help="Training image sizes, comma-separated (default: 128,256; --quick: 64)."),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes", metavar="LIST", help="Training batch sizes (default: 1,4; --quick: 1)."),
    translate_size: Optional[int] = typer.Option(None, "--translate-size", metavar="PX", help="Translation image size, 0 skips (default: 256; --quick: 64)."),
    styles: Optional[int] = typer.Option(None, "--styles", metavar="N", min=1, help="Styles per translated image (default: 8; --quick: 2)."),
    memory_size: Optional[int] = typer.Option(None, "--memory-size", metavar="PX", help="Size of the translate peak-memory check, 0 skips (default: 1024; --quick: 0)."),
    precisions: Optional[str] = typer.Option(None, "--precisions", metavar="LIST", help="Comma-separated (default: the native ones: fp32, plus bf16 on CPUs with AVX512-BF16 / AMX; fp32,bf16,fp16 on CUDA). Emulated bf16 is measured only when listed here."),
    preset: str = typer.Option("munit", "--preset", metavar="NAME", help=f"Model preset: {' | '.join(PRESETS)}."),
    threads: int = typer.Option(0, "--threads", metavar="N", min=0, help="CPU threads while measuring (0: torch's default)."),
    naive: bool = typer.Option(True, "--naive/--no-naive", metavar="", help="Run the naive baseline side by side (speed ratios)."),
    compile: bool = typer.Option(False, "--compile", metavar="", help="torch.compile the training generators (ours)."),
    quick: bool = typer.Option(False, "--quick", metavar="", help="A small subset for a fast check (seconds on a GPU, a minute on a CPU)."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the full results as one JSON object."),
) -> None:
    """Measure translation and training speed on this device, next to the naive baseline.

    Translation: seconds per image (content once, all styles decoded). Training: seconds
    per iteration (one D and one G update). Per precision, with achieved GFLOP/s next to
    the machine's measured peak, peak memory, and the speed ratio to a naive baseline run
    interleaved in the same process (fp32, contiguous memory, one decode per style, the
    reference training step). Weights are random: speed does not depend on them.

    Examples:

      munit bench --quick

      munit bench --device cuda --json > bench.json

      munit bench --sizes 128 --batch-sizes 1 --translate-size 0 --memory-size 0 --threads 1
    """
    dev = resolve_device(device)
    model_preset(preset)  # a clear error for an unknown preset
    cfg = quick_config(dev, preset) if quick else BenchConfig(dev, preset=preset)
    given = {"repeats": repeats, "translate_size": translate_size, "styles": styles, "memory_size": memory_size,
             "train_sizes": sizes and _ints(sizes, "--sizes"), "batch_sizes": batch_sizes and _ints(batch_sizes, "--batch-sizes")}
    cfg = dataclasses.replace(cfg, threads=threads, naive=naive, compile=compile,
                              **{k: v for k, v in given.items() if v is not None})
    if precisions:
        cfg.precisions = tuple(dict.fromkeys(pick_precision(p.strip(), dev) for p in precisions.split(",") if p.strip()))
    if any(b < 1 for b in cfg.batch_sizes):
        raise MunitError("--batch-sizes values must be >= 1", exit_code=2)
    _check_sizes(cfg)
    with progress() as bar:
        task = bar.add_task("bench", total=total_ticks(cfg))
        result = run_bench(cfg, lambda what, done, total: bar.update(task, description=what, completed=done))
    if as_json:
        print_json(result)
    else:
        _print_report(result)
