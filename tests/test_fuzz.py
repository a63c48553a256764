"""Fuzzing (bounded): random and truncated bytes as images never crash translate or the training
data loader; they exit 0 or 1 with an `error:` line, or are skipped."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from conftest import make_image
from munit_cli.cli import app
from munit_cli.datasets import TrainImages, load_training_image, scan_domain
from munit_cli.datacheck import check_image
from munit_cli.errors import MunitError
from munit_cli.images import ImageError

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "bmp": "BMP"}


def _encoded(fmt: str, mode: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    img = Image.radial_gradient("L").resize(size).convert(mode if fmt != "JPEG" or mode in ("L", "RGB") else "RGB")
    img.save(buf, format=fmt)
    return buf.getvalue()


VALID = {(ext, mode): _encoded(fmt, mode, (40, 36)) for ext, fmt in FORMATS.items() for mode in ("RGB", "L", "P")}

# (file extension, bytes): random bytes (after a real magic number, so they reach a decoder),
# valid images cut short, or valid images with bytes changed (mostly in the headers)
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8\xff", "webp": b"RIFF\x00\x01\x00\x00WEBPVP8 ", "bmp": b"BM"}
random_bytes = st.tuples(st.sampled_from(list(FORMATS)), st.booleans(), st.binary(max_size=600)).map(
    lambda t: (t[0], (MAGIC[t[0]] if t[1] else b"") + t[2]))
truncated = st.sampled_from(list(VALID)).flatmap(
    lambda key: st.integers(0, len(VALID[key]) - 1).map(lambda n: (key[0], VALID[key][:n])))
flipped = st.sampled_from(list(VALID)).flatmap(
    lambda key: st.lists(st.tuples(st.integers(0, min(len(VALID[key]) - 1, 120)) | st.integers(0, len(VALID[key]) - 1),
                                   st.integers(0, 255)), min_size=1, max_size=8)
    .map(lambda edits: (key[0], bytes(_apply(VALID[key], edits)))))


def _apply(data: bytes, edits: list[tuple[int, int]]) -> bytearray:
    out = bytearray(data)
    for i, b in edits:
        out[i] = b
    return out


image_bytes = st.one_of(random_bytes, truncated, flipped)
# one-byte edits of the palette BMP that longer runs found: Pillow raises MemoryError,
# OverflowError (absurd sizes: refused from the header) and ValueError (bad palette)
KNOWN = [("bmp", bytes(_apply(VALID[("bmp", "P")], [edit]))) for edit in ((21, 21), (25, 142), (46, 46))]
_counter = itertools.count()


def _write(folder: Path, ext: str, data: bytes) -> Path:
    case = folder / f"case{next(_counter)}"
    case.mkdir(parents=True)
    path = case / f"x.{ext}"
    path.write_bytes(data)
    return path


@FUZZ
@given(sample=image_bytes)
@example(sample=KNOWN[0])
@example(sample=KNOWN[1])
@example(sample=KNOWN[2])
def test_fuzz_translate(tmp_path, tiny_gen_ckpt, sample):
    path = _write(tmp_path, *sample)
    out = path.parent / "out"
    r = runner.invoke(app, ["translate", str(path), "-m", str(tiny_gen_ckpt), "-n", "1", "--workers", "0",
                            "--device", "cpu", "--outdir", str(out)])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    if r.exit_code == 0:
        with Image.open(out / "x_00.png") as im:  # a readable image in, a complete image out
            im.load()
    else:
        assert r.exit_code == 1, r.output
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "x." in errors[0], r.stderr
        assert not out.exists() or not list(out.iterdir())


@FUZZ
@given(sample=image_bytes)
@example(sample=KNOWN[0])
@example(sample=KNOWN[1])
@example(sample=KNOWN[2])
def test_fuzz_data_loader(tmp_path, sample):
    path = _write(tmp_path, *sample)
    gen = torch.Generator().manual_seed(0)
    try:
        x = load_training_image(path, 32, gen)
        assert x.shape == (3, 32, 32) and torch.isfinite(x).all()
    except ImageError:
        pass
    good = make_image(path.parent / "good.png", size=(40, 36))
    x, skipped = TrainImages([path, good], 32)[(0, 7)]  # a bad file is replaced, never raised
    assert x.shape == (3, 32, 32) and skipped in (0, 1)
    good.unlink()
    try:
        dom = scan_domain(None, str(path.parent), display_size=1)
        assert dom.files == [path]
    except MunitError as e:
        assert "no readable images" in str(e)
    c = check_image(path)
    assert c.error is None or "x." in c.error
