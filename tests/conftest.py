"""Shared fixtures: tiny models and Pillow-made images, all in tmp_path."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from munit_cli.checkpoint import save_generators
from munit_cli.config import model_preset
from munit_cli.models import build_generator

torch.set_num_threads(2)


def make_image(path: Path, size=(48, 40), seed: int = 0, mode: str = "RGB", fmt: str | None = None) -> Path:
    """A random picture of coloured shapes (so encoders see structure, not noise)."""
    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(4, size[0]), y0 + rng.randrange(4, size[1])
        draw.ellipse([x0, y0, x1, y1], fill=tuple(rng.randrange(256) for _ in range(3)))
    if mode != "RGB":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def make_domain(folder: Path, n: int, seed: int, size=(48, 40), ext: str = "png") -> Path:
    for i in range(n):
        make_image(folder / f"img{i:03d}.{ext}", size=size, seed=seed * 1000 + i)
    return folder


@pytest.fixture
def one_thread():
    """One torch thread for tiny models: on a busy 2-core machine two threads stall each other
    (training steps 20x slower). Subprocesses get OMP_NUM_THREADS=1 for the same reason."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_cfg():
    return model_preset("tiny")


@pytest.fixture
def tiny_gen_ckpt(tmp_path, tiny_cfg) -> Path:
    """A generator-kind checkpoint of a randomly initialised tiny model, domains dog/cat."""
    torch.manual_seed(0)
    gens = {"a": build_generator(tiny_cfg), "b": build_generator(tiny_cfg)}
    path = tmp_path / "tiny.safetensors"
    save_generators(path, tiny_cfg, gens, ("dog", "cat"), step=7)
    return path


def make_shape_domains(root: Path, n: int, names=("dog", "cat"), size: int = 40, seed: int = 0) -> tuple[Path, Path]:
    """Two easy synthetic domains on noise: root/NAMES[0] red circles, root/NAMES[1] blue squares
    (random positions and sizes), for classifier and eval tests."""
    rng = random.Random(seed)
    folders = []
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = Image.frombytes("RGB", (size, size), rng.randbytes(size * size * 3)).point(lambda v: 64 + v // 2)
            draw = ImageDraw.Draw(img)
            r = rng.randrange(size // 5, size // 3)
            x, y = rng.randrange(r, size - r), rng.randrange(r, size - r)
            box = [x - r, y - r, x + r, y + r]
            if k == 0:
                draw.ellipse(box, fill=(220, rng.randrange(40), rng.randrange(40)))
            else:
                draw.rectangle(box, fill=(rng.randrange(40), rng.randrange(40), 220))
            img.save(folder / f"{name}{i:03d}.png")
        folders.append(folder)
    return folders[0], folders[1]
