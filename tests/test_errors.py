"""Every user mistake is one `error:` line naming the value and the fix, exit 1 (2 for usage),
no traceback; `--debug` shows it. One test per case, across commands."""

from __future__ import annotations

import errno
import json
import struct
import zlib
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_domain, make_image
from munit_cli import atomic, checkpoint, inference
from munit_cli.checkpoint import base_metadata, save_tensors
from munit_cli.cli import app
from munit_cli.errors import MunitError

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def fails(args: list, code: int = 1, *needles: str):
    """Run the CLI, check the exit code, one error line holding every needle, no traceback."""
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return r


@pytest.fixture
def dog(tmp_path) -> Path:
    return make_image(tmp_path / "in" / "dog.png", size=(48, 40), seed=1)


@pytest.fixture
def styles(tmp_path) -> Path:
    p = tmp_path / "cats.safetensors"
    inference.save_style_bank(p, torch.zeros(2, 8), "cat", "random", 0)
    return p


def _truncated(tmp_path: Path, ckpt: Path) -> Path:
    p = tmp_path / "truncated.safetensors"
    data = ckpt.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _corrupt(tmp_path: Path, ckpt: Path) -> Path:
    """Right length, header bytes scrambled (a disk error, a bad copy)."""
    p = tmp_path / "corrupt.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[8:40] = b"\xff" * 32
    p.write_bytes(bytes(data))
    return p


def _header_only_png(path: Path, w: int, h: int) -> Path:
    """A tiny file whose header claims w x h pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


# --- missing / unreadable paths ---------------------------------------------------------------

def test_missing_input_image(tmp_path, tiny_gen_ckpt):
    fails(["translate", tmp_path / "nope.png", "-m", tiny_gen_ckpt, "--device", "cpu"], 1, "nope.png", "does not exist")


def test_missing_model(tmp_path, dog):
    fails(["translate", dog, "-m", tmp_path / "x.safetensors", "--device", "cpu"], 1, "x.safetensors", "does not exist")


def test_missing_checkpoint_for_info(tmp_path):
    fails(["info", tmp_path / "gone.safetensors"], 1, "gone.safetensors", "does not exist")


def test_missing_export_source(tmp_path):
    fails(["export", tmp_path / "gone.safetensors", "--out", tmp_path / "e.safetensors"], 1, "gone.safetensors")


def test_missing_data_root_for_train(tmp_path):
    fails(["train", "--data", tmp_path / "nodata", "--src", "dog", "--tgt", "cat", "--preset", "tiny",
           "--out", tmp_path / "run", "--device", "cpu"], 1, "'dog' not found", "nodata")


def test_missing_style_file(tmp_path, tiny_gen_ckpt, dog):
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--style-file", tmp_path / "no.safetensors", "--device", "cpu"],
          1, "no.safetensors", "does not exist")


def test_unreadable_checkpoint(tmp_path, tiny_gen_ckpt, monkeypatch):
    def denied(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(checkpoint, "open", denied, raising=False)  # tests run as root: chmod would not stop us
    fails(["info", tiny_gen_ckpt], 1, "tiny.safetensors", "check permissions")


def test_unreadable_input_image(tmp_path, tiny_gen_ckpt, dog, monkeypatch):
    from munit_cli import images

    def denied(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(images.Image, "open", denied)
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--outdir", tmp_path / "o", "--device", "cpu"],
          1, "dog.png", "permission denied")


# --- folders without images -----------------------------------------------------------------

def test_translate_folder_without_images(tmp_path, tiny_gen_ckpt):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    fails(["translate", tmp_path / "empty", "-m", tiny_gen_ckpt, "--device", "cpu"], 1, "empty", "contains no images")


def test_train_domain_without_images(tmp_path):
    make_domain(tmp_path / "data" / "dog", 2, seed=1)
    (tmp_path / "data" / "cat").mkdir()
    fails(["train", "--data", tmp_path / "data", "--src", "dog", "--tgt", "cat", "--preset", "tiny",
           "--out", tmp_path / "run", "--device", "cpu", "--dry-run"], 1, "'cat'", "no readable images", "add jpg")


def test_data_check_folder_without_images(tmp_path):
    make_domain(tmp_path / "dog", 2, seed=1)
    (tmp_path / "cat").mkdir()
    fails(["data", "check", tmp_path / "dog", tmp_path / "cat"], 1, "'cat'", "no image files")


# --- wrong checkpoints ----------------------------------------------------------------------------

def test_styles_file_as_model(tmp_path, dog, styles):
    fails(["translate", dog, "-m", styles, "--device", "cpu"], 1, "cats.safetensors", "styles file, not a model")


def test_styles_file_to_export(tmp_path, styles):
    fails(["export", styles, "--out", tmp_path / "e.safetensors"], 1, "cats.safetensors", "styles file")


def test_model_as_style_file(tmp_path, tiny_gen_ckpt, dog):
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--style-file", tiny_gen_ckpt, "--device", "cpu"],
          1, "not a styles file", "sample-styles")


def test_generator_checkpoint_to_train_resume(tmp_path, tiny_gen_ckpt):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest.safetensors").write_bytes(tiny_gen_ckpt.read_bytes())
    fails(["train", "--out", run, "--resume", "--device", "cpu"], 1, "generator checkpoint", "needs a training checkpoint")


def test_resume_without_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    fails(["train", "--out", tmp_path / "run", "--resume", "--device", "cpu"], 1, "no checkpoint", "without --resume")


def test_newer_format_version(tmp_path, tiny_cfg, dog):
    p = tmp_path / "future.safetensors"
    save_tensors(p, {"w": torch.ones(2)}, {**base_metadata("generator", tiny_cfg, ("a", "b"), 0), "format_version": "99"})
    fails(["translate", dog, "-m", p, "--device", "cpu"], 1, "future.safetensors", "format 99", "upgrade munit")


@pytest.mark.parametrize("field, value, needle", [("format_version", "abc", "bad format_version 'abc'"),
                                                  ("kind", "optimizer", "unknown kind 'optimizer'")])
def test_bad_metadata_field(tmp_path, tiny_cfg, field, value, needle):
    p = tmp_path / "odd.safetensors"
    save_tensors(p, {"w": torch.ones(2)}, {**base_metadata("generator", tiny_cfg, ("a", "b"), 0), field: value})
    fails(["info", p], 1, "odd.safetensors", needle, "re-create")


def test_foreign_safetensors(tmp_path):
    p = tmp_path / "foreign.safetensors"
    save_tensors(p, {"w": torch.ones(2)}, {})
    fails(["info", p], 1, "not a munit checkpoint", "import-official")


@pytest.mark.parametrize("command", ["translate", "export", "info"])
def test_truncated_safetensors(tmp_path, tiny_gen_ckpt, dog, command):
    p = _truncated(tmp_path, tiny_gen_ckpt)
    args = {"translate": ["translate", dog, "-m", p, "--device", "cpu"],
            "export": ["export", p, "--out", tmp_path / "e.safetensors"], "info": ["info", p]}[command]
    fails(args, 1, "truncated.safetensors", "truncated or corrupt", "earlier checkpoint")
    assert not (tmp_path / "e.safetensors").exists()


@pytest.mark.parametrize("command", ["translate", "export", "info"])
def test_corrupt_safetensors(tmp_path, tiny_gen_ckpt, dog, command):
    p = _corrupt(tmp_path, tiny_gen_ckpt)
    args = {"translate": ["translate", dog, "-m", p, "--device", "cpu"],
            "export": ["export", p, "--out", tmp_path / "e.safetensors"], "info": ["info", p]}[command]
    fails(args, 1, "corrupt.safetensors", "not a safetensors file")


def test_style_dim_mismatch(tmp_path, tiny_gen_ckpt, dog):
    bad = tmp_path / "dim4.safetensors"
    inference.save_style_bank(bad, torch.zeros(2, 4), "cat", "random", 0)
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--style-file", bad, "--device", "cpu"],
          1, "dim4.safetensors", "style_dim 4 but the model expects 8")


# --- names ------------------------------------------------------------------------------------------

def test_unknown_domain_translate(tiny_gen_ckpt, dog):
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--to", "horse", "--device", "cpu"], 2, "'horse'", "'dog' (a)", "'cat' (b)")


def test_unknown_domain_sample_styles(tmp_path, tiny_gen_ckpt):
    fails(["sample-styles", "-m", tiny_gen_ckpt, "--domain", "horse", "--out", tmp_path / "s.safetensors"],
          2, "'horse'", "'cat' (b)")


def test_unknown_direction_export(tmp_path, tiny_gen_ckpt):
    fails(["export", tiny_gen_ckpt, "--out", tmp_path / "e.safetensors", "--direction", "horse2cat"], 2, "horse2cat")


def test_unknown_domain_data_check(tmp_path):
    make_domain(tmp_path / "data" / "dog", 2, seed=1)
    fails(["data", "check", tmp_path / "data", "--src", "dog", "--tgt", "wolf"], 1, "'wolf' not found",
          str(tmp_path / "data" / "wolf"))


# --- outputs ------------------------------------------------------------------------------------------

def test_outdir_under_a_file(tmp_path, tiny_gen_ckpt, dog):
    (tmp_path / "file").write_text("x")
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--outdir", tmp_path / "file" / "out", "--device", "cpu"],
          1, "--outdir", "is a file, not a folder", "writable")


def test_outdir_read_only(tmp_path, tiny_gen_ckpt, dog, monkeypatch):
    def read_only(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(atomic.tempfile, "TemporaryFile", read_only)  # root ignores chmod
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--outdir", tmp_path / "o", "--device", "cpu"],
          1, "--outdir", "Permission denied", "writable")


def test_train_out_under_a_file(tmp_path):
    make_domain(tmp_path / "data" / "dog", 2, seed=1)
    make_domain(tmp_path / "data" / "cat", 2, seed=2)
    (tmp_path / "file").write_text("x")
    fails(["train", "--data", tmp_path / "data", "--src", "dog", "--tgt", "cat", "--preset", "tiny", "--iters", "1",
           "--out", tmp_path / "file" / "run", "--device", "cpu"], 1, "--out", "is a file, not a folder")


def test_export_out_under_a_file(tmp_path, tiny_gen_ckpt):
    (tmp_path / "file").write_text("x")
    fails(["export", tiny_gen_ckpt, "--out", tmp_path / "file" / "e.safetensors"], 1, "is a file, not a folder")


def _no_space(fd):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_translate_keeps_previous_file(tmp_path, tiny_gen_ckpt, dog, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()
    (out / "dog_00.png").write_bytes(b"previous")
    monkeypatch.setattr(atomic.os, "fsync", _no_space)
    fails(["translate", dog, "-m", tiny_gen_ckpt, "-n", "1", "--outdir", out, "--overwrite", "--device", "cpu"],
          1, "dog_00.png", "No space left on device", "unchanged")
    assert (out / "dog_00.png").read_bytes() == b"previous"
    assert [p.name for p in out.iterdir()] == ["dog_00.png"]  # no temporary file left


def test_full_disk_export_keeps_previous_file(tmp_path, tiny_gen_ckpt, monkeypatch):
    out = tmp_path / "e.safetensors"
    out.write_bytes(b"previous")
    monkeypatch.setattr(atomic.os, "fsync", _no_space)
    fails(["export", tiny_gen_ckpt, "--out", out, "--overwrite"], 1, "No space left on device")
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.safetensors", "tiny.safetensors"]


# --- image sizes ---------------------------------------------------------------------------------

def test_pixel_limit_translate(tmp_path, tiny_gen_ckpt):
    big = make_image(tmp_path / "big.png", size=(100, 100))
    fails(["translate", big, "-m", tiny_gen_ckpt, "--max-pixels", "5000", "--outdir", tmp_path / "o", "--device", "cpu"],
          1, "big.png", "100x100", "limit of 5,000", "--max-pixels")
    r = runner.invoke(app, ["translate", str(big), "-m", str(tiny_gen_ckpt), "--max-pixels", "20000", "-n", "1",
                            "--outdir", str(tmp_path / "o"), "--device", "cpu"])
    assert r.exit_code == 0, r.output  # raising the limit lets it through


def test_decompression_bomb_header(tmp_path, tiny_gen_ckpt):
    """Beyond Pillow's own guard too: our limit and flag are named, not a Pillow warning."""
    bomb = _header_only_png(tmp_path / "bomb.png", 30000, 30000)
    fails(["translate", bomb, "-m", tiny_gen_ckpt, "--outdir", tmp_path / "o", "--device", "cpu"],
          1, "900,000,000 pixels", "limit of 50,000,000", "--max-pixels")


def test_pixel_limit_train(tmp_path):
    make_domain(tmp_path / "data" / "dog", 2, seed=1, size=(100, 100))
    make_domain(tmp_path / "data" / "cat", 2, seed=2, size=(40, 40))
    fails(["train", "--data", tmp_path / "data", "--src", "dog", "--tgt", "cat", "--preset", "tiny", "--max-pixels", "5000",
           "--out", tmp_path / "run", "--device", "cpu", "--dry-run"], 1, "'dog'", "limit of 5,000", "--max-pixels")
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--max-pixels", "20000", "--dry-run", "--device", "cpu"])
    assert r.exit_code == 0 and json.loads(r.stdout)["domains"][0]["images"] == 2


def test_pixel_limit_train_skips_some_with_a_warning(tmp_path):
    make_domain(tmp_path / "data" / "dog", 3, seed=1, size=(40, 40))
    make_image(tmp_path / "data" / "dog" / "huge.png", size=(100, 100))
    make_domain(tmp_path / "data" / "cat", 3, seed=2, size=(40, 40))
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--max-pixels", "5000", "--iters", "1", "--out", str(tmp_path / "run"), "--device", "cpu",
                            "--quiet"])
    assert r.exit_code == 0, r.output
    assert "1 image(s) over the limit of 5,000 pixels are skipped" in r.stderr and "--max-pixels" in r.stderr


def test_pixel_limit_negative_is_usage(tmp_path, tiny_gen_ckpt, dog):
    r = runner.invoke(app, ["translate", str(dog), "-m", str(tiny_gen_ckpt), "--max-pixels", "-1"])
    assert r.exit_code == 2 and "--max-pixels" in r.output


def test_image_smaller_than_16_px(tmp_path, tiny_gen_ckpt):
    tiny = make_image(tmp_path / "tiny.png", size=(12, 30))
    fails(["translate", tiny, "-m", tiny_gen_ckpt, "--outdir", tmp_path / "o", "--device", "cpu"],
          1, "tiny.png", "12x30", "smaller than 16 px")


def test_reference_smaller_than_16_px(tmp_path, tiny_gen_ckpt, dog):
    tiny = make_image(tmp_path / "ref.png", size=(10, 10))
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--style-from", tiny, "--outdir", tmp_path / "o", "--device", "cpu"],
          1, "ref.png", "smaller than 16 px")


# --- the machinery ---------------------------------------------------------------------------------

def test_os_error_is_one_line(tmp_path, tiny_gen_ckpt, dog, monkeypatch):
    """An OSError nobody anticipated (here while planning outputs) is still one line, exit 1."""
    def boom(*a, **k):
        raise OSError(errno.EIO, "Input/output error", "/dev/sdz")
    monkeypatch.setattr(inference, "plan_jobs", boom)
    import munit_cli.commands.translate as cmd
    monkeypatch.setattr(cmd, "plan_jobs", boom)
    fails(["translate", dog, "-m", tiny_gen_ckpt, "--device", "cpu"], 1, "Input/output error", "/dev/sdz", "free disk space")


def test_debug_shows_the_traceback(tmp_path, tiny_gen_ckpt):
    r = runner.invoke(app, ["--debug", "translate", str(tmp_path / "nope.png"), "-m", str(tiny_gen_ckpt)])
    assert r.exit_code == 1 and isinstance(r.exception, MunitError)


def test_resume_with_corrupt_run_config(tmp_path):
    make_domain(tmp_path / "data" / "dog", 2, seed=1)
    make_domain(tmp_path / "data" / "cat", 2, seed=2)
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "data"), "--src", "dog", "--tgt", "cat", "--preset", "tiny",
                            "--iters", "1", "--out", str(run), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    (run / "config.json").write_text("{broken")
    fails(["train", "--out", run, "--resume", "--iters", "2", "--device", "cpu"], 1, "config.json", "restore it")
