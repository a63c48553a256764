"""No lost work: SIGKILL and resume, failed checkpoint writes, NaN stops, interrupted translate runs."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import make_domain, make_image
from munit_cli import atomic, training_run
from munit_cli.checkpoint import load_generators, parse_info
from munit_cli.cli import app
from munit_cli.errors import MunitError
from munit_cli.trainer import Trainer

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def pets(tmp_path) -> Path:
    root = tmp_path / "data"
    make_domain(root / "dog", 6, seed=1)
    make_domain(root / "cat", 6, seed=2)
    return root


def _train_args(root: Path, run_dir: Path, *extra) -> list[str]:
    return ["train", "--data", str(root), "--src", "dog", "--tgt", "cat", "--preset", "tiny", "--workers", "0",
            "--device", "cpu", "--quiet", "--sample-every", "100000", "--out", str(run_dir), *map(str, extra)]


def _latest_step(run_dir: Path) -> int:
    try:
        return parse_info(run_dir / "checkpoints" / "latest.safetensors").step
    except MunitError:
        return -1


def _metric_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_mid_training_then_resume(pets, tmp_path):
    run_dir = tmp_path / "run"
    log = tmp_path / "stderr.txt"  # a file, not a pipe: --quiet logs every step to stderr
    with open(log, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "munit_cli", *_train_args(pets, run_dir, "--iters", "100000",
                                                                               "--save-every", "3", "--log-every", "1")],
                             stdout=subprocess.DEVNULL, stderr=err,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})  # see conftest.one_thread
        try:
            deadline = time.time() + 120
            while time.time() < deadline and _latest_step(run_dir) < 6 and p.poll() is None:
                time.sleep(0.05)
            time.sleep(0.07)  # land anywhere: mid-step, mid-save or mid-log
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    saved = _latest_step(run_dir)
    assert saved >= 6 and saved % 3 == 0
    assert load_generators(run_dir / "checkpoints" / "latest.safetensors") is not None  # the kill never hurt it
    assert max(_metric_steps(run_dir)) >= saved  # steps after the checkpoint were lost, and only those

    final = saved + 4
    r = runner.invoke(app, _train_args(pets, run_dir, "--resume", "--iters", final))
    assert r.exit_code == 0, r.output
    info = parse_info(run_dir / "checkpoints" / "latest.safetensors")
    assert info.kind == "training" and info.step == final
    bundle = load_generators(run_dir / "checkpoints" / "latest.safetensors")
    assert bundle.info.step == final and set(bundle.gens) == {"a", "b"}
    steps = _metric_steps(run_dir)
    assert steps == list(range(1, final + 1))  # lines after the checkpoint were replaced, none twice
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))


def test_resume_without_run_config_uses_the_checkpoint_folders(pets, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert runner.invoke(app, _train_args(pets, run_dir, "--iters", "2", "--save-every", "2")).exit_code == 0
    (run_dir / "config.json").unlink()
    monkeypatch.chdir(tmp_path)  # never the current folder as a domain
    r = runner.invoke(app, ["train", "--out", str(run_dir), "--resume", "--iters", "3", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "training dog (4 images) <-> cat (4 images)" in r.stderr  # 2 of 6 held aside for samples
    assert parse_info(run_dir / "checkpoints" / "latest.safetensors").step == 3


def test_failed_checkpoint_write_keeps_previous_latest(pets, tmp_path, monkeypatch):
    """A checkpoint write that dies half-way (disk full at fsync) never replaces latest."""
    real_save = training_run.save_tensors

    def save_then_fail_at_4(path, tensors, meta):
        if "step-00000004" in Path(path).name:
            monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
        real_save(path, tensors, meta)

    monkeypatch.setattr(training_run, "save_tensors", save_then_fail_at_4)
    run_dir = tmp_path / "run"
    r = runner.invoke(app, _train_args(pets, run_dir, "--iters", "6", "--save-every", "2", "--log-every", "2"))
    assert r.exit_code == 1 and "No space left on device" in r.stderr and "Traceback" not in r.output
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest.safetensors", "step-00000002.safetensors"]
    assert parse_info(ckpts / "latest.safetensors").step == 2
    assert load_generators(ckpts / "latest.safetensors").info.step == 2


def test_interrupted_checkpoint_write_keeps_previous_latest(pets, tmp_path, monkeypatch):
    """Ctrl-C (or any exception) inside the write of step 4: latest still the step-2 file."""
    real_save = training_run.save_tensors

    def interrupt_at_4(path, tensors, meta):
        if "step-00000004" in Path(path).name:
            monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
        real_save(path, tensors, meta)

    monkeypatch.setattr(training_run, "save_tensors", interrupt_at_4)
    run_dir = tmp_path / "run"
    r = runner.invoke(app, _train_args(pets, run_dir, "--iters", "6", "--save-every", "2", "--log-every", "2"))
    assert r.exit_code == 130
    ckpts = run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest.safetensors", "step-00000002.safetensors"]
    assert load_generators(ckpts / "latest.safetensors").info.step == 2


def test_nan_loss_stops_within_one_log_interval(pets, tmp_path, monkeypatch):
    real_step = Trainer.train_step

    def nan_from_step_5(self, x_a, x_b):
        losses = real_step(self, x_a, x_b)
        if self.step >= 5:
            losses["loss_gen_total"] = losses["loss_gen_total"] * float("nan")
        return losses

    monkeypatch.setattr(Trainer, "train_step", nan_from_step_5)
    run_dir = tmp_path / "run"
    r = runner.invoke(app, _train_args(pets, run_dir, "--iters", "30", "--save-every", "3", "--log-every", "3"))
    assert r.exit_code == 1 and "Traceback" not in r.output
    err = r.stderr
    assert "error: loss_gen_total became nan by step 6: training stopped" in err  # NaN at 5, log interval 3
    assert "step-00000003.safetensors" in err and "--lr" in err
    assert parse_info(run_dir / "checkpoints" / "latest.safetensors").step == 3  # the last good one, intact
    assert load_generators(run_dir / "checkpoints" / "latest.safetensors") is not None
    assert not (run_dir / "checkpoints" / "step-00000006.safetensors").exists()
    assert _metric_steps(run_dir) == [3]


def _outputs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_translate_killed_then_rerun_completes(tmp_path, tiny_gen_ckpt, monkeypatch):
    src = tmp_path / "dogs"
    for i in range(3):
        make_image(src / f"d{i}.png", seed=i)
    args = ["translate", str(src), "-m", str(tiny_gen_ckpt), "-n", "4", "--device", "cpu", "--workers", "2"]
    assert runner.invoke(app, [*args, "--outdir", str(tmp_path / "clean")]).exit_code == 0

    out = tmp_path / "o"
    real_fsync, calls = os.fsync, []

    def killed_at_write_6(fd):
        calls.append(fd)
        if len(calls) >= 6:  # the run dies inside a write: nothing is written after that
            raise KeyboardInterrupt
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", killed_at_write_6)
    r = runner.invoke(app, [*args, "--outdir", str(out)])
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert r.exit_code == 130 and "interrupted" in r.stderr
    partial = _outputs(out)
    assert 0 < len(partial) < 12 and not [n for n in partial if n.endswith(".tmp")]
    for name in partial:  # every file under a final name is a complete image
        with Image.open(out / name) as im:
            im.load()
    # a SIGKILL cannot clean up: it leaves a temporary file, which the rerun removes
    (out / ".d2_03.png.k1ll3d00.tmp").write_bytes(b"\x89PNG half")
    r = runner.invoke(app, [*args, "--outdir", str(out)])
    assert r.exit_code == 0, r.output
    assert f"skipped {len(partial)} existing" in r.stderr
    assert _outputs(out) == _outputs(tmp_path / "clean") == [f"d{i}_{k:02d}.png" for i in range(3) for k in range(4)]
    for name in _outputs(out):
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
