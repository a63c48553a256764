"""Image discovery, robust decoding to RGB, tensor conversion and atomic image writes.

Shared by training data, translation and `data check`, so every command treats odd files
(grayscale, palette, RGBA, CMYK, 16-bit, EXIF-rotated, truncated, huge, tiny) the same way.
"""

from __future__ import annotations

import glob
import io
from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from munit_cli.atomic import atomic_write
from munit_cli.errors import MunitError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DEFAULT_MAX_PIXELS = 50_000_000  # decompression-bomb guard; raise with --max-pixels
MIN_SIDE = 16  # the style encoder downsamples 16x
# load_rgb checks --max-pixels from the header, before decoding; Pillow's own fixed guard
# would otherwise refuse (or warn about) images the user allowed, with an unclear message.
Image.MAX_IMAGE_PIXELS = None


class ImageError(MunitError):
    """An input image that cannot be used (unreadable, too large, too small)."""


def is_image_path(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


def find_images(folder: Path) -> list[Path]:
    """All image files below `folder`, recursive, by extension (case-insensitive), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image_path(p))


def discover_images(inputs: list[str]) -> list[Path]:
    """Expand files, folders (recursive) and glob patterns into a sorted-per-input list.
    A missing path or an input that yields no image is an error naming it."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = find_images(p)
            if not found:
                raise MunitError(f"folder {item!r} contains no images ({', '.join(IMAGE_EXTS)}): point at a folder of photos")
            out += found
        elif p.is_file():
            out.append(p)
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True))
            files = [m for m in matches if m.is_file() and is_image_path(m)]
            for m in matches:
                if m.is_dir():
                    files += find_images(m)
            if not files:
                raise MunitError(f"pattern {item!r} matches no images: check the pattern")
            out += files
        else:
            raise MunitError(f"input {item!r} does not exist: pass an image file, a folder or a glob pattern")
    return out


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. 16-bit and float images are scaled, not clipped;
    transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        img = img.convert("I")
    if img.mode == "I":
        # 16-bit data stored in 32-bit ints: map 0..65535 to 0..255
        lo, hi = img.getextrema()
        scale = 1 / 256 if hi > 255 else 1.0
        img = img.point(lambda v: v * scale).convert("L")
    elif img.mode == "F":
        lo, hi = img.getextrema()
        scale = 255.0 if hi <= 1.0 else 1.0
        img = img.point(lambda v: v * scale).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return img.convert("RGB")


def load_rgb(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = MIN_SIDE,
             draft: int | None = None) -> Image.Image:
    """Decode an image fully, apply EXIF orientation, convert to RGB. `draft` lets JPEGs decode
    at a reduced scale (still reading every byte) with at least `draft` px a side, for checks.

    Raises ImageError with a one-line reason for anything unusable."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            if max_pixels and w * h > max_pixels:
                raise ImageError(
                    f"image {str(path)!r} is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}: "
                    "pass --max-pixels to raise it if you trust the file")
            if draft:
                img.draft(None, (draft, draft))
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"image {str(path)!r} does not exist")
    except IsADirectoryError:
        raise ImageError(f"{str(path)!r} is a folder, not an image")
    except PermissionError:
        raise ImageError(f"cannot read {str(path)!r} (permission denied): check the file's permissions")
    except UnidentifiedImageError as e:
        raise ImageError(f"cannot read {str(path)!r} as an image ({type(e).__name__}): skip or replace the file")
    except Exception as e:  # decoders raise many types (struct.error, SyntaxError ...) on bad bytes
        raise ImageError(f"cannot decode {str(path)!r} ({e or type(e).__name__}): the file is corrupt or truncated")
    if min(img.size) < min_side:
        raise ImageError(f"image {str(path)!r} is {img.size[0]}x{img.size[1]}, smaller than {min_side} px on a side: use a larger image")
    return img


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is `size`, keeping the aspect ratio (antialiased bicubic)."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) == (w, h):
        return img
    return img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)


def to_tensor(img: Image.Image) -> Tensor:
    """RGB PIL image -> (3, H, W) float32 in [-1, 1]."""
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.size[1], img.size[0], 3)
    return t.permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_uint8(x: Tensor) -> Tensor:
    """(..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3): linear map with clamping, never a
    min-max stretch, so colours mean the same across outputs."""
    x = x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().contiguous()


def to_pil(x: Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB PIL image."""
    return Image.fromarray(to_uint8(x).numpy(), "RGB")


FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP"}


def save_image(img: Image.Image, path: Path | str, quality: int = 95) -> None:
    """Write atomically; the format follows the extension."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower().lstrip("."))
    if fmt is None:
        raise MunitError(f"unsupported output extension {path.suffix!r}: use one of {', '.join(FORMATS)}")
    buf = io.BytesIO()
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    img.save(buf, format=fmt, **kwargs)
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))


def make_grid(rows: list[list[Tensor]], pad: int = 2) -> Image.Image:
    """Contact sheet from rows of (3, H, W) tensors in [-1, 1]; cells are centred on white."""
    ncols = max(len(r) for r in rows)
    ch = max(t.shape[-2] for r in rows for t in r)
    cw = max(t.shape[-1] for r in rows for t in r)
    sheet = Image.new("RGB", (ncols * (cw + pad) + pad, len(rows) * (ch + pad) + pad), (255, 255, 255))
    for i, row in enumerate(rows):
        for j, t in enumerate(row):
            im = to_pil(t)
            x = pad + j * (cw + pad) + (cw - im.size[0]) // 2
            y = pad + i * (ch + pad) + (ch - im.size[1]) // 2
            sheet.paste(im, (x, y))
    return sheet
