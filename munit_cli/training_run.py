"""A training run on disk: run directory, the loop, checkpoints, samples, metrics, stopping.

RUN_DIR/config.json (resolved config, written before step 0), checkpoints/ (step files,
the last `keep`, plus latest.safetensors), samples/step-XXXXXXXX.jpg, metrics.jsonl.
Progress is reported through a callback; nothing here prints.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import torch

from munit_cli.atomic import atomic_write_bytes, remove_stale_temps
from munit_cli.checkpoint import base_metadata, load_tensors, save_tensors
from munit_cli.config import RunConfig, to_dict
from munit_cli.datasets import Domain, make_stream, scan_domain
from munit_cli.errors import MunitError
from munit_cli.evaluation import ProbeSpec, TrainingProbe
from munit_cli.images import DEFAULT_MAX_PIXELS, load_rgb, make_grid, resize_shorter, save_image, to_tensor
from munit_cli.runtime import auto_precision
from munit_cli.seeds import stable_seed
from munit_cli.run_config import ResolvedRun, RunPaths, resolve_run_config
from munit_cli.trainer import Trainer

SAMPLE_STYLES = 3  # fixed random styles per display image in sample grids


# --- what a run reports (through its callback, in this order) ---------------------------

@dataclass
class RunStarted:
    step: int  # > 0 when resumed
    total: int  # cfg.train.iters
    domains: tuple[str, str]
    images: tuple[int, int]  # usable images per domain
    unreadable: int  # files that could not be opened (both domains)
    too_large: int  # images over --max-pixels (both domains)
    precision: str  # what auto resolved to
    init_from: str  # the warm start's label ("" = fresh init)


@dataclass
class StepDone:
    step: int
    losses: dict[str, torch.Tensor]  # this step's, on the device (no host sync)


@dataclass
class MetricsLogged:
    row: dict  # the metrics.jsonl line: step, mean losses, lr, images_per_s, elapsed_s, probe figures


@dataclass
class SampleWritten:
    path: Path


@dataclass
class CheckpointSaved:
    path: Path
    step: int


@dataclass
class BestSaved:
    path: Path  # checkpoints/best.safetensors
    figures: dict  # the probe's


@dataclass
class RunWarning:
    message: str


@dataclass
class RunDone:
    step: int
    steps_run: int
    path: Path | None  # the last checkpoint written


TrainingEvent = Union[RunStarted, StepDone, MetricsLogged, SampleWritten, CheckpointSaved, BestSaved, RunWarning, RunDone]
Callback = Callable[[TrainingEvent], None]


def _ignore(event: TrainingEvent) -> None:
    pass


class StopRequested(Exception):
    """Raised after the checkpoint is written when SIGINT/SIGTERM asked the run to stop."""

    def __init__(self, signum: int, path: Path):
        super().__init__(f"stopped by signal {signum}")
        self.signum, self.path = signum, path


@dataclass
class StopFlag:
    signum: int | None = None

    def request(self, signum: int) -> None:
        self.signum = signum


@dataclass
class Options:
    """How to run (not part of the model/experiment config)."""

    device: torch.device
    resume: bool = False
    vgg_weights: str | None = None
    compile: bool = False
    tensorboard: bool = False
    rank: int = 0
    world: int = 1
    channels_last: bool | None = None
    overrides_on_resume: dict = field(default_factory=dict)  # train fields replaced when resuming
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are skipped (decompression-bomb guard)
    probe: ProbeSpec | None = None  # --eval-every N --eval-data DIR --classifier C


def _display_tensor(path: Path, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Resize the shorter side and centre-crop (deterministic, for samples)."""
    img = resize_shorter(load_rgb(path, max_pixels=max_pixels), size)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return to_tensor(img.crop((left, top, left + size, top + size)))


class TrainingRun:
    """Owns the loop. `run()` trains to cfg.train.iters, saving as configured."""

    def __init__(self, run_dir: Path, cfg: RunConfig | ResolvedRun, opts: Options, callback: Callback | None = None,
                 stop: StopFlag | None = None):
        """`cfg`: the finished config from run_config.resolve_run_config, or a plain RunConfig
        that is resolved here with `opts.resume` and `opts.overrides_on_resume`."""
        self.paths = RunPaths(Path(run_dir))
        self.opts, self.callback, self.stop = opts, callback or _ignore, stop or StopFlag()
        self.main = opts.rank == 0
        run = cfg if isinstance(cfg, ResolvedRun) else \
            resolve_run_config(self.paths.root, cfg, opts.overrides_on_resume, opts.resume)
        self.resumed, self.init_label = run.resume, run.init_label
        cfg = self.cfg = run.cfg
        root = Path(cfg.data.root) if cfg.data.root else None
        t = cfg.train
        self.dom_a: Domain = scan_domain(root, cfg.data.src, t.display_size, opts.max_pixels)
        self.dom_b: Domain = scan_domain(root, cfg.data.tgt, t.display_size, opts.max_pixels)
        self.domains = (self.dom_a.name, self.dom_b.name)
        self.probe = TrainingProbe(opts.probe, self.domains, cfg.model.image_size, opts.device, opts.max_pixels) \
            if opts.probe is not None and self.main else None
        self.trainer = Trainer(cfg.model, t, opts.device, rank=opts.rank, world=opts.world,
                               vgg_weights=opts.vgg_weights, channels_last=opts.channels_last, compile=opts.compile)
        self.positions = {"a": 0, "b": 0}
        if run.init_from is not None:
            self.trainer.warm_start(load_tensors(run.init_from), str(run.init_from))
        if run.resume is not None:
            info = run.resume
            self.trainer.load_state(load_tensors(info.path), info.meta, info.step, str(info.path))
            self.positions = json.loads(info.meta.get("data_positions", "{}")) or \
                {"a": info.step * t.batch_size, "b": info.step * t.batch_size}
        self.skipped = 0
        self.tb = None

    # --- files ---------------------------------------------------------------------------

    def _write_config(self) -> None:
        d = {"model": to_dict(self.cfg.model), "train": to_dict(self.cfg.train), "data": to_dict(self.cfg.data)}
        from munit_cli import __version__

        d["munit_version"] = __version__
        d["resolved"] = {"device": str(self.opts.device), "precision": self.trainer.cfg.precision}  # what auto became
        if self.cfg.train.precision == "auto":
            d["resolved"]["precision_reason"] = auto_precision(self.opts.device).reason
        atomic_write_bytes(self.paths.config, (json.dumps(d, indent=2) + "\n").encode())

    def _checkpoint_state(self) -> tuple[dict, dict]:
        tensors, meta = self.trainer.state()
        meta["data_positions"] = json.dumps(self.positions)
        meta["data"] = json.dumps({"a": str(self.dom_a.folder), "b": str(self.dom_b.folder)})
        meta.update(base_metadata("training", self.cfg.model, self.domains, self.trainer.step, train=self.cfg.train))
        if self.init_label:
            meta["init_from"] = self.init_label
        return tensors, meta

    def save_checkpoint(self) -> Path:
        """Write step-XXXXXXXX.safetensors, point latest at it, drop step files beyond `keep`."""
        step = self.trainer.step
        tensors, meta = self._checkpoint_state()
        path = self.paths.step_file(step)
        save_tensors(path, tensors, meta)
        tmp = self.paths.checkpoints / f".latest.{os.getpid()}.tmp"
        try:  # a hard link renamed over latest: atomic, and no second copy of the bytes
            if tmp.exists():
                tmp.unlink()
            os.link(path, tmp)
            os.replace(tmp, self.paths.latest)
        except OSError:
            save_tensors(self.paths.latest, tensors, meta)
        steps = sorted(self.paths.checkpoints.glob("step-*.safetensors"))
        for old in steps[: max(0, len(steps) - self.cfg.train.keep)]:
            old.unlink(missing_ok=True)
        return path

    @torch.no_grad()
    def save_samples(self) -> Path:
        """Grid per display image: input, reconstruction, 3 fixed-style translations, one fresh."""
        gen_a, gen_b = self.trainer.inference_generators()
        size, dev = self.cfg.model.image_size, self.opts.device
        sd = self.cfg.model.gen.style_dim
        fixed = torch.randn(SAMPLE_STYLES, sd, 1, 1, generator=torch.Generator().manual_seed(stable_seed(self.cfg.train.seed, "display")))
        fresh_gen = torch.Generator().manual_seed(stable_seed(self.cfg.train.seed, "fresh", self.trainer.step))
        rows = []
        for dom, src, tgt in ((self.dom_a, gen_a, gen_b), (self.dom_b, gen_b, gen_a)):
            for p in dom.display:
                x = _display_tensor(p, size, self.opts.max_pixels).unsqueeze(0).to(dev)
                c, s = src.encode(x)
                styles = torch.cat([fixed, torch.randn(1, sd, 1, 1, generator=fresh_gen)]).to(dev)
                y = tgt.decode(c.expand(len(styles), -1, -1, -1), styles)
                rows.append([x[0].cpu(), src.decode(c, s)[0].cpu(), *y.cpu()])
        path = self.paths.samples / f"step-{self.trainer.step:08d}.jpg"
        grid = make_grid(rows)
        save_image(grid, path, quality=90)
        if self.tb is not None:
            self.tb.add_image("samples", to_tensor(grid).add(1).div(2), self.trainer.step)
        return path

    def run_probe(self) -> dict:
        """The --eval-every probe; a new best success rate rewrites best.safetensors (atomically)."""
        figures = self.probe.run(*self.trainer.inference_generators(), self.cfg.model, self.trainer.cfg.precision)
        if self.probe.improved:
            tensors, meta = self._checkpoint_state()
            save_tensors(self.paths.best, tensors, {**meta, "probe": json.dumps(figures)})
            self.callback(BestSaved(self.paths.best, figures))
        return figures

    def _append_metrics(self, row: dict) -> None:
        with open(self.paths.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def _trim_metrics(self) -> None:
        """On resume, drop metric lines logged after the checkpoint we continue from."""
        if not self.paths.metrics.exists():
            return
        keep = []
        for line in self.paths.metrics.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.trainer.step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                continue
        atomic_write_bytes(self.paths.metrics, ("\n".join(keep) + "\n" if keep else "").encode())

    # --- the loop ------------------------------------------------------------------------

    def _stop_requested(self) -> bool:
        flag = self.stop.signum is not None
        if self.opts.world > 1:  # every rank must agree to stop on the same step
            t = torch.tensor([float(self.stop.signum or 0)], device=self.opts.device if self.opts.device.type == "cuda" else "cpu")
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = t.item() > 0
            if flag and self.stop.signum is None:
                self.stop.signum = int(t.item())
        return flag

    def run(self) -> Path:
        """Train to the configured number of iterations. Returns the last checkpoint path."""
        t, tr = self.cfg.train, self.trainer
        if self.main:
            self.paths.checkpoints.mkdir(parents=True, exist_ok=True)
            self.paths.samples.mkdir(parents=True, exist_ok=True)
            self._write_config()
            if self.resumed is not None:
                for folder in (self.paths.checkpoints, self.paths.samples):  # left by a killed write
                    remove_stale_temps(folder)
                remove_stale_temps(self.paths.root, {self.paths.config.name, self.paths.metrics.name})
                self._trim_metrics()
                if self.probe is not None:
                    self.probe.restore_best(self.paths.best)
            if self.opts.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise MunitError('--tensorboard needs the tensorboard package: pip install "munit-cli[tensorboard]"')
                self.tb = SummaryWriter(str(self.paths.root / "tb"))
        pin = self.opts.device.type == "cuda"
        streams = {
            d: make_stream(dom.files, self.cfg.model.image_size, t.batch_size, t.seed, d, self.positions[d],
                           t.workers, pin, self.opts.rank, self.opts.world, self.opts.max_pixels, t.center_crop)
            for d, dom in (("a", self.dom_a), ("b", self.dom_b))
        }
        self.callback(RunStarted(tr.step, t.iters, self.domains, (len(self.dom_a.files), len(self.dom_b.files)),
                                 len(self.dom_a.unreadable) + len(self.dom_b.unreadable),
                                 len(self.dom_a.too_large) + len(self.dom_b.too_large), tr.cfg.precision, self.init_label))
        last_ckpt = self.paths.latest if self.resumed is not None else None
        acc: dict[str, torch.Tensor] = {}
        skipped = torch.zeros((), dtype=torch.long)
        n_acc, t0, t_log, start_step = 0, time.perf_counter(), time.perf_counter(), tr.step
        while tr.step < t.iters:
            (x_a, sk_a), (x_b, sk_b) = next(streams["a"]), next(streams["b"])
            skipped += sk_a.sum() + sk_b.sum()
            for d in "ab":
                self.positions[d] += t.batch_size
            losses = tr.train_step(x_a, x_b)
            for k, v in losses.items():
                acc[k] = acc[k] + v.float() if k in acc else v.float()
            n_acc += 1
            step = tr.step
            stop = self._stop_requested()
            probe = self.run_probe() if self.probe is not None and self.probe.due(step, t.iters) else {}
            if step % t.log_every == 0 or step == t.iters or stop or step % t.save_every == 0 or probe:
                now = time.perf_counter()
                means = {k: (v / n_acc).item() for k, v in acc.items()}  # the only host sync
                bad = [k for k, v in means.items() if not math.isfinite(v)]
                if bad:
                    where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else "; no checkpoint was written yet"
                    raise MunitError(f"{bad[0]} became {means[bad[0]]} by step {step}: training stopped{where}. "
                                     "Try a lower --lr, --precision fp32, or check the data with `munit data check`")
                new_skips = int(skipped.item())
                if new_skips:
                    self.skipped += new_skips
                    skipped.zero_()
                    self.callback(RunWarning(f"skipped {new_skips} unreadable image(s) (total {self.skipped})"))
                row = {"step": step, **means, "lr": tr.opt_gen.param_groups[0]["lr"],
                       "images_per_s": 2 * t.batch_size * self.opts.world * n_acc / max(now - t_log, 1e-9),
                       "elapsed_s": now - t0, "skipped_images": self.skipped, **probe}
                if self.main:
                    self._append_metrics(row)
                self.callback(MetricsLogged(row))
                acc, n_acc, t_log = {}, 0, now
            if self.main and (step % t.sample_every == 0 or step == t.iters):
                self.callback(SampleWritten(self.save_samples()))
            if step % t.save_every == 0 or step == t.iters or stop:
                if self.main:
                    last_ckpt = self.save_checkpoint()
                    self.callback(CheckpointSaved(last_ckpt, step))
                if self.opts.world > 1:
                    torch.distributed.barrier()
            self.callback(StepDone(step, losses))
            if stop:
                raise StopRequested(self.stop.signum, last_ckpt or self.paths.latest)
        if self.tb is not None:
            self.tb.close()
        self.callback(RunDone(tr.step, tr.step - start_step, last_ckpt))
        return last_ckpt or self.paths.latest
