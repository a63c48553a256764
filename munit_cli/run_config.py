"""A training run's finished config: a new run's flags and --init-from source, or a resumed
run's checkpoint, its config.json data folders and the flags that may change on resume.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from munit_cli.checkpoint import GEN_PARTS, CheckpointInfo, parse_info
from munit_cli.config import DataConfig, RunConfig, architecture_differences
from munit_cli.errors import MunitError
from munit_cli.weights import resolve_model


@dataclass
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.safetensors"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.safetensors"  # best probe success rate (--eval-every)

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    def step_file(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.safetensors"


@dataclass
class ResolvedRun:
    """What a TrainingRun starts from."""

    cfg: RunConfig
    resume: CheckpointInfo | None = None  # the training checkpoint continued from (its .path)
    init_from: Path | None = None  # a new run's warm-start checkpoint
    init_label: str = ""  # recorded as init_from in every checkpoint ("" = fresh init)


def latest_checkpoint(run_dir: Path) -> Path:
    p = RunPaths(Path(run_dir)).latest
    if not p.exists():
        raise MunitError(f"run directory {str(run_dir)!r} has no checkpoint ({p} missing; a run stopped before its "
                         "first checkpoint has nothing to resume): start a new run with another --out, without --resume")
    return p


def check_init_from(cfg: RunConfig) -> tuple[Path, CheckpointInfo]:
    """The checkpoint `cfg.train.init_from` names (a file, run folder or model name), checked
    to hold full generators whose architecture is the run's (and its D's, when it has them)."""
    path = resolve_model(cfg.train.init_from)
    info = parse_info(path)
    if info.kind not in ("generator", "training"):
        raise MunitError(f"--init-from {str(path)!r} is a {info.kind} file: pass a generator or training checkpoint")
    if any(set(p) != set(GEN_PARTS) for p in info.parts().values()):
        raise MunitError(f"--init-from {str(path)!r} is a one-direction export: pass a full generator or training "
                         "checkpoint")
    has_dis = any(k.startswith("dis_a.") for k in info.shapes)
    diffs = architecture_differences(info.model, cfg.model, has_dis)
    if diffs:
        raise MunitError(f"--init-from {str(path)!r} has another architecture than this run ({'; '.join(diffs[:4])}"
                         f"{' ...' if len(diffs) > 4 else ''}; file != run): pass the --preset / --config / flags it "
                         "was trained with (`munit info` shows its model config)", exit_code=2)
    return path, info


def resolve_run_config(run_dir: Path, cfg: RunConfig, overrides: dict, resume: bool) -> ResolvedRun:
    """A new run: `cfg` (from the flags) with its --init-from checked and made absolute, in an
    empty `run_dir`. A resumed run: the experiment from the latest checkpoint, the train fields in
    `overrides` replaced, the data folders from config.json (else `cfg.data`, else the checkpoint)."""
    paths = RunPaths(Path(run_dir))
    if resume:
        return _resumed(paths, cfg.data, overrides)
    if paths.root.exists() and any(paths.root.iterdir()):
        raise MunitError(f"run directory {str(paths.root)!r} is not empty: pass --resume to continue it, "
                         "or choose a new --out")
    if not cfg.train.init_from:
        return ResolvedRun(cfg)
    src, info = check_init_from(cfg)
    cfg.train.init_from = str(src.resolve())  # recorded in config.json and every checkpoint
    return ResolvedRun(cfg, init_from=src, init_label=f"{cfg.train.init_from} ({info.kind}, step {info.step})")


def _resumed(paths: RunPaths, data: DataConfig, overrides: dict) -> ResolvedRun:
    ckpt = latest_checkpoint(paths.root)
    info = parse_info(ckpt)
    if info.kind != "training":
        raise MunitError(f"{ckpt} is a {info.kind} checkpoint: --resume needs a training checkpoint")
    try:
        saved = json.loads(paths.config.read_text()).get("data") or {} if paths.config.exists() else {}
    except (ValueError, OSError, AttributeError) as e:
        raise MunitError(f"cannot read the run's {str(paths.config)!r} ({e}): restore it, or delete it "
                         "and pass --data/--src/--tgt again with --resume")
    cfg = RunConfig(info.model, info.train, data)
    for k, v in overrides.items():
        setattr(cfg.train, k, v)
    cfg.train.validate()
    for k in ("src", "tgt", "root"):
        if saved.get(k):
            setattr(cfg.data, k, saved[k])
    if not (cfg.data.src and cfg.data.tgt):  # no config.json: the folders the checkpoint was trained on
        folders = json.loads(info.meta.get("data", "{}"))
        cfg.data.src, cfg.data.tgt, cfg.data.root = folders.get("a", ""), folders.get("b", ""), ""
    if not (cfg.data.src and cfg.data.tgt):
        raise MunitError(f"run {str(paths.root)!r} does not say where its data is: "
                         "pass --data/--src/--tgt with --resume", exit_code=2)
    return ResolvedRun(cfg, resume=info, init_label=info.meta.get("init_from", ""))
