"""`munit train`: resolve the config (preset < --config < flags), then run or resume training."""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Optional

import torch
import typer
from rich.progress import TextColumn

from munit_cli.atomic import ensure_writable_dir
from munit_cli.config import (PRESETS, RunConfig, TrainConfig, load_run_config_file, model_preset, resumable_fields,
                              to_dict, train_preset)
from munit_cli.datasets import scan_domain
from munit_cli.errors import MunitError
from munit_cli.evaluation import probe_spec
from munit_cli.images import DEFAULT_MAX_PIXELS
from munit_cli.run_config import check_init_from, resolve_run_config
from munit_cli.runtime import DEVICE_HELP, PRECISION_HELP, resolve_device
from munit_cli.training_run import (MetricsLogged, Options, RunStarted, RunWarning, StepDone, StopFlag, StopRequested,
                                    TrainingEvent, TrainingRun)
from munit_cli.ui import err_console, friendly, pick_precision, print_json, progress, warn

# a flag named like a TrainConfig field sets that field, when given
TRAIN_FLAGS = tuple(f.name for f in fields(TrainConfig))
# flag name -> (ModelConfig section, field), applied only when given
MODEL_FLAGS = {"gan_type": ("dis", "gan_type"), "dis_kind": ("dis", "kind"), "dis_weight_norm": ("dis", "weight_norm"),
               "gen_weight_norm": ("gen", "weight_norm"), "up_norm": ("gen", "up_norm"), "res_block": ("gen", "res_block"),
               "n_downsample": ("gen", "n_downsample")}
# what may change when resuming (the experiment itself comes from the checkpoint)
RESUMABLE = resumable_fields()


def _distributed() -> tuple[int, int, int]:
    """(rank, world, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def _device(device: str, world: int, local_rank: int) -> torch.device:
    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
    return dev


def _init_distributed(world: int, dev: torch.device) -> None:
    if world > 1:
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))


def _resolve(preset: str, config: Optional[Path], flags: dict, image_size: Optional[int], src, tgt, data,
             resume: bool) -> RunConfig:
    if not resume and (src is None or tgt is None) and config is None:
        raise MunitError("pass --src and --tgt (the two image domains)", exit_code=2)
    cfg = RunConfig(model_preset(preset), train_preset(preset))
    if config is not None:
        cfg = load_run_config_file(config, cfg)
    for k, v in flags.items():
        if v is not None and k in MODEL_FLAGS:
            setattr(getattr(cfg.model, MODEL_FLAGS[k][0]), MODEL_FLAGS[k][1], v)
        elif v is not None and k in TRAIN_FLAGS:
            setattr(cfg.train, k, v)
    if image_size is not None:
        cfg.model.image_size = image_size
    for k, v in (("src", src), ("tgt", tgt), ("root", data)):
        if v is not None:
            setattr(cfg.data, k, str(v))
    cfg.model.validate()
    cfg.train.validate()
    if not resume and (not cfg.data.src or not cfg.data.tgt):
        raise MunitError("pass --src and --tgt (the two image domains)", exit_code=2)
    return cfg


def _resume_overrides(flags: dict, resume: bool, main: bool) -> dict:
    """The given flags a resumed run takes; says which given flags --resume ignores."""
    if resume:
        ignored = [k for k, v in flags.items() if v is not None and k not in RESUMABLE]
        if ignored and main:
            warn(f"--resume keeps the run's own settings; ignoring {', '.join('--' + k.replace('_', '-') for k in ignored)}")
    return {k: v for k, v in flags.items() if v is not None and k in RESUMABLE}


def _print_dry_run(cfg: RunConfig, run_dir: Path, dev: torch.device, prec: str, max_pixels: int) -> None:
    if cfg.train.init_from:
        check_init_from(cfg)
    root = Path(cfg.data.root) if cfg.data.root else None
    doms = [scan_domain(root, n, cfg.train.display_size, max_pixels) for n in (cfg.data.src, cfg.data.tgt)]
    print_json({"run_dir": str(run_dir), "device": str(dev), "precision": prec, "config": {"model": to_dict(cfg.model),
                "train": to_dict(cfg.train), "data": to_dict(cfg.data)},
                "domains": [{"name": d.name, "folder": str(d.folder), "images": len(d.files),
                             "unreadable": [str(p) for p in d.unreadable], "too_large": [str(p) for p in d.too_large],
                             "display": [str(p) for p in d.display]}
                            for d in doms]})


def _handle_signals(stop: StopFlag, main: bool) -> dict:
    """Ctrl-C / SIGTERM: finish this step and save; a second one stops at once. Returns the old handlers."""
    def on_signal(signum, frame):
        if stop.signum is not None:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        stop.request(signum)
        if main:
            err_console.print(f"[yellow]signal {signum}: finishing this step and saving a checkpoint (again to abort)[/]")

    return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


class _Report:
    """Draws the progress bar and prints what the run reports (rank 0 only)."""

    def __init__(self, dev: torch.device, run_dir: Path, max_pixels: int, quiet: bool, main: bool):
        self.dev, self.run_dir, self.max_pixels, self.quiet, self.main = dev, run_dir, max_pixels, quiet, main
        self.bar = progress(TextColumn("{task.fields[info]}"), disable=quiet or not main)
        self.task = None

    def __call__(self, e: TrainingEvent) -> None:
        if not self.main:
            return
        if isinstance(e, RunStarted):
            self._start(e)
        elif isinstance(e, StepDone):
            self.bar.update(self.task, completed=e.step)
        elif isinstance(e, MetricsLogged):
            self._log(e.row)
        elif isinstance(e, RunWarning):
            warn(e.message)

    def _start(self, e: RunStarted) -> None:
        err_console.print(f"training {e.domains[0]} ({e.images[0]} images) <-> "
                          f"{e.domains[1]} ({e.images[1]} images) on {self.dev}, "
                          f"{e.precision}, into {self.run_dir}")
        if e.init_from and e.step == 0:
            err_console.print(f"weights from {e.init_from}")
        if e.unreadable:
            warn(f"{e.unreadable} file(s) could not be opened and are skipped (see --dry-run)")
        if e.too_large:
            warn(f"{e.too_large} image(s) over the limit of {self.max_pixels:,} pixels are skipped: "
                 "pass --max-pixels to raise it if you trust the files")
        self.task = self.bar.add_task("train", total=e.total, completed=e.step, info="")

    def _log(self, row: dict) -> None:
        short = (f"{row['images_per_s']:.1f} img/s  x {row['loss_recon_x_a']:.3f}/{row['loss_recon_x_b']:.3f}  "
                 f"gan {row['loss_gan_a']:.2f}/{row['loss_gan_b']:.2f}  dis {row['loss_dis_a']:.2f}/{row['loss_dis_b']:.2f}")
        if "probe_success" in row:
            best = "none yet" if row["probe_best"] is None else f"{row['probe_best']:.2f}"
            collapsed = "" if row["probe_eligible"] else ", collapsed"
            short += f"  success {row['probe_success']:.2f}{collapsed} (best {best})"
        self.bar.update(self.task, info=short)
        if self.quiet:
            print(json.dumps(row), file=sys.stderr, flush=True)


def _run(run_dir: Path, cfg: RunConfig, opts: Options, overrides: dict, quiet: bool) -> None:
    """Train (or resume) in run_dir; Ctrl-C saves and exits 128 + the signal number."""
    main, stop = opts.rank == 0, StopFlag()
    old = _handle_signals(stop, main)
    report = _Report(opts.device, run_dir, opts.max_pixels, quiet, main)
    try:
        resolved = resolve_run_config(run_dir, cfg, overrides, opts.resume)
        if opts.resume and main:  # the run's own precision: it may be emulated on this machine
            pick_precision(resolved.cfg.train.precision, opts.device)
        with report.bar:
            run = TrainingRun(run_dir, resolved, opts, report, stop)
            path = run.run()
    except StopRequested as e:
        if main:
            err_console.print(f"stopped at step {run.trainer.step}; checkpoint written; resume with "
                              f"`munit train --out {run_dir} --resume`")
            print(e.path)
        raise typer.Exit(128 + e.signum)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if opts.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if main:
        print(path)


@friendly
def train(
    src: Optional[str] = typer.Option(None, "--src", metavar="DOMAIN", help="Domain a: a folder, or a name under --data (ROOT/NAME or ROOT/train/NAME)."),
    tgt: Optional[str] = typer.Option(None, "--tgt", metavar="DOMAIN", help="Domain b, like --src."),
    data: Optional[Path] = typer.Option(None, "--data", metavar="ROOT", help="Data root holding the domain folders (AFHQ layout works)."),
    out: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help="Run directory (default: runs/SRC2TGT)."),
    preset: str = typer.Option("munit", "--preset", metavar="NAME", help=f"Model and schedule preset: {' | '.join(PRESETS)}."),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="JSON file {model, train, data} applied over the preset."),
    iters: Optional[int] = typer.Option(None, "--iters", metavar="N", help="Total training iterations."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", metavar="N", help="Images per domain per step (per GPU)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", metavar="PX", help="Training crop size (shorter side resized to it)."),
    lr: Optional[float] = typer.Option(None, "--lr", metavar="LR", help="Generator learning rate."),
    lr_dis: Optional[float] = typer.Option(None, "--lr-dis", metavar="LR", help="Discriminator learning rate."),
    lr_step: Optional[int] = typer.Option(None, "--lr-step", metavar="N", help="Halve learning rates every N steps."),
    gan_w: Optional[float] = typer.Option(None, "--gan-w", metavar="W", help="Adversarial loss weight."),
    recon_x_w: Optional[float] = typer.Option(None, "--recon-x-w", metavar="W", help="Image reconstruction weight."),
    recon_c_w: Optional[float] = typer.Option(None, "--recon-c-w", metavar="W", help="Content reconstruction weight."),
    recon_s_w: Optional[float] = typer.Option(None, "--recon-s-w", metavar="W", help="Style reconstruction weight."),
    recon_x_cyc_w: Optional[float] = typer.Option(None, "--recon-x-cyc-w", metavar="W", help="Explicit cycle loss weight (0 = off)."),
    vgg_w: Optional[float] = typer.Option(None, "--vgg-w", metavar="W", help="Perceptual loss weight (needs --vgg-weights)."),
    vgg_weights: Optional[Path] = typer.Option(None, "--vgg-weights", metavar="FILE", help="Local VGG16 weights file for the perceptual loss."),
    ds_w: Optional[float] = typer.Option(None, "--ds-w", metavar="W", help="Diversity-sensitive loss weight (StarGAN v2; 0 = off): against style collapse."),
    ds_decay: Optional[int] = typer.Option(None, "--ds-decay", metavar="N", help="Decay --ds-w linearly to 0 over N steps (0 = constant)."),
    ref_p: Optional[float] = typer.Option(None, "--ref-p", metavar="P", help="Fraction of steps that translate with the other real image's encoded style instead of a random one (StarGAN v2's reference-guided training; 0 = off): for --style-from."),
    resume: bool = typer.Option(False, "--resume", metavar="", help="Continue the run in --out from its latest checkpoint."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    precision: Optional[str] = typer.Option(None, "--precision", metavar="NAME", help=PRECISION_HELP + "; fp32 master weights (default: auto)."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Seed for init, data order, augmentation and styles."),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="DataLoader worker processes."),
    save_every: Optional[int] = typer.Option(None, "--save-every", metavar="N", help="Steps between checkpoints."),
    keep: Optional[int] = typer.Option(None, "--keep", metavar="N", help="Step checkpoints to keep (plus latest)."),
    sample_every: Optional[int] = typer.Option(None, "--sample-every", metavar="N", help="Steps between sample grids."),
    log_every: Optional[int] = typer.Option(None, "--log-every", metavar="N", help="Steps between metric lines."),
    ema: Optional[bool] = typer.Option(None, "--ema/--no-ema", metavar="", help="Keep EMA generators (used for samples/export)."),
    ema_beta: Optional[float] = typer.Option(None, "--ema-beta", metavar="BETA", help="EMA decay."),
    shared_fakes: Optional[bool] = typer.Option(None, "--shared-fakes/--reference-step", metavar="", help="Generate fakes once per step (fast) or twice as the reference."),
    gan_type: Optional[str] = typer.Option(None, "--gan-type", metavar="NAME", help="GAN objective: lsgan (paper) | hinge | nonsaturating."),
    dis_kind: Optional[str] = typer.Option(None, "--dis-kind", metavar="NAME", help="Discriminator: patch (paper, multi-scale) | global (residual, one score per image) | both."),
    gen_weight_norm: Optional[str] = typer.Option(None, "--gen-weight-norm", metavar="NAME", help="Generator weight norm: none | spectral."),
    dis_weight_norm: Optional[str] = typer.Option(None, "--dis-weight-norm", metavar="NAME", help="Discriminator weight norm: none | spectral."),
    up_norm: Optional[str] = typer.Option(None, "--up-norm", metavar="NAME", help="Decoder upsampling norm: ln (paper) | adain (style-modulated)."),
    res_block: Optional[str] = typer.Option(None, "--res-block", metavar="NAME", help="Residual blocks: post (paper, conv-norm-act) | pre (pre-activation)."),
    n_downsample: Optional[int] = typer.Option(None, "--n-downsample", metavar="N", help="Content encoder downsamplings (paper 2; 3 gives a coarser content code, more room to change shape)."),
    lr_policy: Optional[str] = typer.Option(None, "--lr-policy", metavar="NAME", help="step (halve every --lr-step, paper) | constant."),
    init: Optional[str] = typer.Option(None, "--init", metavar="NAME", help="Weight init: reference (kaiming G, N(0, 0.02) D) | orthogonal."),
    diffaug: Optional[str] = typer.Option(None, "--diffaug", metavar="OPS", help='DiffAugment on every D input, e.g. "color,translation,cutout" ("" = off).'),
    center_crop: Optional[float] = typer.Option(None, "--center-crop", metavar="FRAC", help="Keep this central fraction of each photo side before resize and crop (1 = off)."),
    ema_start: Optional[int] = typer.Option(None, "--ema-start", metavar="N", help="Step at which EMA averaging starts (copies the weights before)."),
    init_from: Optional[str] = typer.Option(None, "--init-from", metavar="MODEL", help="Warm start: load generators (and discriminators if present) from a checkpoint, run folder or model name; fresh optimisers, step 0."),
    compile: bool = typer.Option(False, "--compile", metavar="", help="torch.compile the generators."),
    tensorboard: bool = typer.Option(False, "--tensorboard", metavar="", help="Also write TensorBoard events to RUN_DIR/tb."),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="", help="Print the resolved config and the data found, then exit."),
    quiet: bool = typer.Option(False, "--quiet", metavar="", help="No progress bar; log lines only."),
    max_pixels: int = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", min=0, metavar="N", help="Skip larger images (decompression-bomb guard; 0: no limit)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", metavar="N", help="Every N steps, probe success rate and diversity on --eval-data with --classifier; keeps checkpoints/best.safetensors."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", metavar="DIR", help="Probe images: ROOT with test/NAME, val/NAME or NAME folders (the first 16 per domain)."),
    classifier: Optional[Path] = typer.Option(None, "--classifier", metavar="FILE", help="Domain classifier for the probe (`munit train-classifier`)."),
) -> None:
    """Train MUNIT on two folders of unpaired images.

    Examples:
      munit train --data afhq --src dog --tgt cat
      munit train --data ../pets --src cat --tgt dog --preset small --out runs/pets
      torchrun --nproc_per_node 4 -m munit_cli train --data afhq --src dog --tgt cat
    Ctrl-C finishes the current step, writes a checkpoint and exits 130; --resume continues.
    """
    # the flags named like config fields (None: not given); --resume warns about the non-resumable ones
    flags = dict(iters=iters, batch_size=batch_size, lr=lr, lr_dis=lr_dis, lr_step=lr_step, gan_w=gan_w, recon_x_w=recon_x_w,
                 recon_c_w=recon_c_w, recon_s_w=recon_s_w, recon_x_cyc_w=recon_x_cyc_w, vgg_w=vgg_w, ds_w=ds_w,
                 ds_decay=ds_decay, ref_p=ref_p, precision=precision, seed=seed, workers=workers, save_every=save_every, keep=keep,
                 sample_every=sample_every, log_every=log_every, ema=ema, ema_beta=ema_beta, shared_fakes=shared_fakes,
                 gan_type=gan_type, dis_kind=dis_kind, gen_weight_norm=gen_weight_norm, dis_weight_norm=dis_weight_norm,
                 up_norm=up_norm, res_block=res_block, n_downsample=n_downsample, lr_policy=lr_policy, init=init,
                 diffaug=diffaug, center_crop=center_crop, ema_start=ema_start, init_from=init_from)
    if resume and out is None:
        raise MunitError("--resume needs --out RUN_DIR (the run to continue)", exit_code=2)
    if resume and init_from is not None:
        raise MunitError("--init-from starts a new run from a checkpoint's weights and --resume continues a run: "
                         "pass one of them", exit_code=2)
    rank, world, local_rank = _distributed()
    dev = _device(device, world, local_rank)
    cfg = _resolve(preset, config, flags, image_size, src, tgt, data, resume)
    prec = pick_precision(cfg.train.precision, dev)  # validates, and warns where bf16 is emulated
    run_dir = out or Path("runs") / f"{Path(cfg.data.src).name}2{Path(cfg.data.tgt).name}"
    if vgg_weights is None and cfg.train.vgg_w > 0:
        raise MunitError("--vgg-w > 0 needs --vgg-weights FILE (VGG16 weights; nothing is downloaded)", exit_code=2)
    if dry_run:
        _print_dry_run(cfg, run_dir, dev, prec, max_pixels)
        return
    _init_distributed(world, dev)
    overrides = _resume_overrides(flags, resume, rank == 0)
    opts = Options(dev, resume=resume, vgg_weights=str(vgg_weights) if vgg_weights else None, compile=compile,
                   tensorboard=tensorboard, rank=rank, world=world, overrides_on_resume=overrides, max_pixels=max_pixels)
    opts.probe = probe_spec(eval_every, eval_data, classifier)
    if rank == 0:
        ensure_writable_dir(run_dir, "--out ")
    _run(run_dir, cfg, opts, overrides, quiet)
