"""Training pipeline (issue 3): end-to-end, exact resume, signals, DDP, bad data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import make_domain, make_image
from munit_cli.checkpoint import load_generators, load_tensors, parse_info
from munit_cli.cli import app
from munit_cli.config import DataConfig, RunConfig, model_preset, train_preset
from munit_cli.training_run import Options, TrainingRun

runner = CliRunner()


@pytest.fixture
def pets(tmp_path) -> Path:
    root = tmp_path / "data"
    make_domain(root / "train" / "dog", 10, seed=1)
    make_domain(root / "train" / "cat", 10, seed=2)
    make_domain(root / "val" / "cat", 2, seed=3)
    return root


def _cfg(root: Path, **train) -> RunConfig:
    cfg = RunConfig(model_preset("tiny"), train_preset("tiny"), DataConfig("dog", "cat", str(root)))
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


def test_end_to_end_tiny(pets, tmp_path, one_thread):
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(pets), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--iters", "300", "--log-every", "25", "--save-every", "150", "--sample-every", "150",
                            "--keep", "1", "--out", str(run_dir), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(25, 301, 25))
    for row in rows:
        assert all(v == v and abs(v) != float("inf") for v in row.values() if isinstance(v, float))
        assert {"loss_gan_a", "loss_recon_x_b", "loss_recon_s_a", "loss_recon_c_b", "loss_dis_a", "lr", "images_per_s", "elapsed_s"} <= set(row)
    first = rows[0]["loss_recon_x_a"] + rows[0]["loss_recon_x_b"]
    last = rows[-1]["loss_recon_x_a"] + rows[-1]["loss_recon_x_b"]
    assert last < 0.7 * first, (first, last)
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["model"]["gen"]["dim"] == 8 and cfg["data"]["src"] == "dog"
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["latest.safetensors", "step-00000300.safetensors"]  # --keep 1
    info = parse_info(run_dir / "checkpoints" / "latest.safetensors")
    assert info.kind == "training" and info.step == 300 and info.domains == ("dog", "cat")
    t = load_tensors(run_dir / "checkpoints" / "latest.safetensors")
    assert any(k.startswith("gen_a_ema.") for k in t) and any(k.startswith("opt_dis.state.") for k in t)
    assert load_generators(run_dir / "checkpoints" / "latest.safetensors").ema
    for s in (150, 300):
        with Image.open(run_dir / "samples" / f"step-{s:08d}.jpg") as im:
            assert im.size[0] > 32 * 5
    assert r.stdout.strip().endswith("latest.safetensors") or "step-00000300" in r.stdout


def test_refuses_non_empty_run_dir(pets, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "something").write_text("x")
    r = runner.invoke(app, ["train", "--data", str(pets), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--out", str(run_dir), "--device", "cpu"])
    assert r.exit_code == 1 and "not empty" in r.output


def test_missing_domain_lists_tried(pets, tmp_path):
    r = runner.invoke(app, ["train", "--data", str(pets), "--src", "wolf", "--tgt", "cat", "--preset", "tiny",
                            "--out", str(tmp_path / "r"), "--device", "cpu"])
    assert r.exit_code == 1
    assert "wolf" in r.output and str(pets / "train" / "wolf") in r.output


def test_dry_run_prints_config_and_data(pets, tmp_path):
    cfgfile = tmp_path / "c.json"
    cfgfile.write_text(json.dumps({"train": {"lr": 3e-4, "iters": 7}}))
    r = runner.invoke(app, ["train", "--data", str(pets), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--config", str(cfgfile), "--iters", "9", "--dry-run", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["config"]["train"]["lr"] == 3e-4 and d["config"]["train"]["iters"] == 9  # preset < config < flags
    assert d["domains"][0]["images"] == 10 - 2 and d["domains"][1]["images"] == 10  # cat has a val folder
    assert "val" in d["domains"][1]["display"][0]
    assert not (tmp_path / "runs").exists()


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    t = load_tensors(run_dir / "checkpoints" / "latest.safetensors")
    return {k: v for k, v in t.items() if not k.startswith("rng.")}


def test_exact_resume_bit_identical(pets, tmp_path):
    dev = torch.device("cpu")
    straight = tmp_path / "straight"
    TrainingRun(straight, _cfg(pets, iters=8, save_every=4, workers=0), Options(dev)).run()
    half = tmp_path / "half"
    TrainingRun(half, _cfg(pets, iters=4, save_every=4, workers=0), Options(dev)).run()
    resumed = TrainingRun(half, _cfg(pets, iters=8, save_every=4, workers=0),
                          Options(dev, resume=True, overrides_on_resume={"iters": 8}))
    assert resumed.trainer.step == 4
    resumed.run()
    a, b = _weights(straight), _weights(half)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    m = [json.loads(l)["step"] for l in (half / "metrics.jsonl").read_text().splitlines()]
    assert m == sorted(set(m))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "munit_cli", *args]


def test_sigint_saves_and_exits_130(pets, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(_cli("train", "--data", str(pets), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                              "--iters", "100000", "--save-every", "100000", "--log-every", "1", "--out", str(run_dir),
                              "--device", "cpu", "--quiet", "--workers", "0"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until it is really training
        if (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").read_text().count("\n") >= 3:
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    info = parse_info(run_dir / "checkpoints" / "latest.safetensors")
    steps = [json.loads(l)["step"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert info.kind == "training" and info.step == steps[-1] >= 3
    assert load_generators(run_dir / "checkpoints" / "latest.safetensors") is not None
    assert "resume" in err and "Traceback" not in err


def test_bad_data_is_skipped(tmp_path):
    root = tmp_path / "data"
    make_domain(root / "a", 4, seed=1)
    make_domain(root / "b", 4, seed=2)
    good = (root / "a" / "img000.png").read_bytes()
    with open(root / "a" / "zz_corrupt.jpg", "wb") as f:  # truncated JPEG: header fine, data cut
        make_image(tmp_path / "full.jpg", size=(256, 256), seed=5)
        data = (tmp_path / "full.jpg").read_bytes()
        f.write(data[: len(data) * 2 // 3])
    (root / "a" / "notes.png").write_text("this is not an image")
    make_image(root / "b" / "cmyk.jpg", size=(48, 48), seed=6, mode="CMYK")
    Image.new("I;16", (48, 48), 40000).save(root / "b" / "deep.png")
    make_image(root / "b" / "gray.png", size=(48, 48), seed=7, mode="L")
    assert good
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(root), "--src", "a", "--tgt", "b", "--preset", "tiny",
                            "--iters", "24", "--log-every", "4", "--out", str(run_dir), "--device", "cpu",
                            "--quiet", "--workers", "0", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert "could not be opened" in r.output  # notes.png, found by the header scan
    assert "skipped" in r.output and "unreadable image(s)" in r.output  # the truncated JPEG, while decoding
    rows = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 24 and rows[-1]["skipped_images"] >= 1


def test_empty_domain_is_an_error(tmp_path):
    root = tmp_path / "data"
    make_domain(root / "a", 3, seed=1)
    (root / "b").mkdir(parents=True)
    (root / "b" / "x.png").write_text("nope")
    r = runner.invoke(app, ["train", "--data", str(root), "--src", "a", "--tgt", "b", "--preset", "tiny",
                            "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert r.exit_code == 1 and "no readable images" in r.output


def test_shared_fakes_and_reference_step_both_train(pets, tmp_path):
    """The reference step (fakes twice, D grads in G step) and ours give finite, similar losses."""
    dev = torch.device("cpu")
    for shared in (True, False):
        run = TrainingRun(tmp_path / f"r{shared}", _cfg(pets, iters=6, workers=0, shared_fakes=shared), Options(dev))
        run.run()
        row = json.loads((tmp_path / f"r{shared}" / "metrics.jsonl").read_text().splitlines()[-1])
        assert 0 < row["loss_recon_x_a"] < 2 and 0 < row["loss_dis_a"] < 10


def _ddp_worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    import torch.distributed as dist
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        run = TrainingRun(Path(out) / "run", _cfg(Path(root), iters=4, workers=0, save_every=2),
                          Options(torch.device("cpu"), rank=rank, world=world))
        run.run()
        tensors, _ = run.trainer.state()
        save_file({k: v.contiguous() for k, v in tensors.items() if k.startswith(("gen_", "dis_"))},
                  str(Path(out) / f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_stay_identical(pets, tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(pets), str(tmp_path)), nprocs=2, join=True)
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.equal(a[k], b[k]), k
    run = tmp_path / "run"
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # one writer
    assert parse_info(run / "checkpoints" / "latest.safetensors").step == 4


def test_torchrun_cli_writes_one_set_of_files(pets, tmp_path):
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "munit_cli", "train", "--data", str(pets), "--src", "dog", "--tgt", "cat",
                        "--preset", "tiny", "--iters", "4", "--log-every", "2", "--save-every", "2",
                        "--workers", "0", "--device", "cpu", "--out", str(run), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "latest.safetensors", "step-00000002.safetensors", "step-00000004.safetensors"]
    assert r.stdout.count("latest.safetensors") + r.stdout.count("step-00000004") == 1
